using System.Buffers;
using System.Buffers.Binary;
using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Swsusp;

/// <summary>Compression of a hibernation image's stream.</summary>
internal enum SwsuspCompression
{
    None,
    Lzo,
    Lz4,
}

/// <summary>Compressed chunks of the stream (struct-of-arrays): first stream page, compressed length, pages it decodes to.</summary>
internal sealed class SwsuspChunkIndex
{
    private long[] _stream = new long[256];
    private int[] _length = new int[256];
    private byte[] _pages = new byte[256];

    public int Count { get; private set; }

    public void Add(long streamPage, int compressedLength, int pages)
    {
        if (Count == _stream.Length)
        {
            Array.Resize(ref _stream, Count * 2);
            Array.Resize(ref _length, Count * 2);
            Array.Resize(ref _pages, Count * 2);
        }
        _stream[Count] = streamPage;
        _length[Count] = compressedLength;
        _pages[Count] = (byte)pages;
        Count++;
    }

    public long StreamPage(int chunk) => _stream[chunk];
    public int CompressedLength(int chunk) => _length[chunk];
    public int Pages(int chunk) => _pages[chunk];
}

/// <summary>
/// Decodes the pages of a compressed hibernation image. Each decoded run is one segment: pages with consecutive PFNs
/// inside one chunk; the run's <see cref="PhysicalRun.FileOffset"/> is the segment index. The last decoded chunk is
/// kept per thread, so the segments of one chunk cost one decompression when read in order.
/// </summary>
internal sealed class SwsuspChunkDecoder : IPageDecoder
{
    [ThreadStatic]
    private static ChunkCache? t_cache;

    // The per-thread cache names its owner by id, not by reference, so it never keeps a closed capture's decoder (and
    // its mapped file) alive (as HibernationDecoder does).
    private static long s_nextId;
    private readonly long _id = Interlocked.Increment(ref s_nextId);

    private readonly IByteSource _file;
    private readonly SwsuspStreamMap _map;
    private readonly SwsuspChunkIndex _chunks;
    private readonly SwsuspCompression _compression;
    private readonly int[] _segmentChunk;
    private readonly byte[] _segmentPage;

    public SwsuspChunkDecoder(IByteSource file, SwsuspStreamMap map, SwsuspChunkIndex chunks, SwsuspCompression compression, int[] segmentChunk, byte[] segmentPage)
    {
        _file = file;
        _map = map;
        _chunks = chunks;
        _compression = compression;
        _segmentChunk = segmentChunk;
        _segmentPage = segmentPage;
    }

    public int MaxUnitSize => SwsuspLayout.ChunkBytes;

    public bool TryLocate(in PhysicalRun run, ulong physicalAddress, out DecodeUnit unit)
    {
        unit = new DecodeUnit(run.FileOffset, run.PhysicalAddress, (int)run.Length);
        return run.FileOffset >= 0 && run.FileOffset < _segmentChunk.Length;
    }

    public bool TryDecode(in DecodeUnit unit, Span<byte> destination, out string? problem)
    {
        int chunk = _segmentChunk[unit.Key];
        ChunkCache cache = t_cache ??= new ChunkCache();
        if (cache.Owner != _id || cache.Chunk != chunk)
        {
            cache.Owner = 0;
            if (!TryDecodeChunk(_file, _map, _chunks, chunk, _compression, cache.Buffer, out problem))
            {
                return false;
            }
            cache.Owner = _id;
            cache.Chunk = chunk;
        }
        int start = _segmentPage[unit.Key] * SwsuspLayout.PageSize;
        cache.Buffer.AsSpan(start, destination.Length).CopyTo(destination);
        problem = null;
        return true;
    }

    /// <summary>
    /// Decompresses chunk <paramref name="chunk"/> into the start of <paramref name="destination"/> (at least
    /// <see cref="SwsuspLayout.ChunkBytes"/> bytes); false with a reason when the stored data does not decode to
    /// exactly the chunk's pages.
    /// </summary>
    public static bool TryDecodeChunk(IByteSource file, SwsuspStreamMap map, SwsuspChunkIndex chunks, int chunk, SwsuspCompression compression,
        Span<byte> destination, out string? problem)
    {
        long first = chunks.StreamPage(chunk);
        int length = chunks.CompressedLength(chunk);
        int expected = chunks.Pages(chunk) * SwsuspLayout.PageSize;
        int total = SwsuspLayout.ChunkHeader + length;
        long at = map.FileOffset(first, out long contiguous);
        byte[]? rented = null;
        try
        {
            ReadOnlySpan<byte> stored;
            if (contiguous * SwsuspLayout.PageSize >= total && file.TryGetSpan(at, total, out stored))
            {
                stored = stored[SwsuspLayout.ChunkHeader..];
            }
            else
            {
                // The chunk's pages are scattered over the swap area: gather them.
                rented = ArrayPool<byte>.Shared.Rent(total);
                int done = 0;
                long page = first;
                while (done < total)
                {
                    int take = Math.Min(SwsuspLayout.PageSize, total - done);
                    if (file.Read(map.FileOffset(page), rented.AsSpan(done, take)) != take)
                    {
                        problem = $"swsusp chunk[{chunk}] at 0x{at:X}: page {page - first} is past the end of the file";
                        return false;
                    }
                    done += take;
                    page++;
                }
                stored = rented.AsSpan(SwsuspLayout.ChunkHeader, length);
            }
            Span<byte> output = destination[..expected];
            int produced;
            try
            {
                produced = compression == SwsuspCompression.Lz4
                    ? K4os.Compression.LZ4.LZ4Codec.Decode(stored, output)
                    : Lzo1x.Decompress(stored, output);
            }
            catch (Exception e) when (e is InvalidDataException or ArgumentException or IndexOutOfRangeException)
            {
                produced = -1;
            }
            if (produced != expected)
            {
                problem = $"swsusp chunk[{chunk}] at 0x{at:X}: {(compression == SwsuspCompression.Lz4 ? "LZ4" : "LZO1X")} data of {length} bytes "
                    + (produced < 0 ? "is corrupt" : $"decodes to {produced} bytes, expected {expected}");
                return false;
            }
            problem = null;
            return true;
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Reads the compressed length (size_t, little-endian) at the start of a chunk's first page.</summary>
    public static ulong ReadChunkLength(ReadOnlySpan<byte> page) => BinaryPrimitives.ReadUInt64LittleEndian(page);

    private sealed class ChunkCache
    {
        public readonly byte[] Buffer = new byte[SwsuspLayout.ChunkBytes];
        public long Owner;
        public int Chunk = -1;
    }
}
