using System.Buffers;
using System.Buffers.Binary;
using System.IO.Compression;
using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Kdump;

/// <summary>
/// Decodes one kdump page: reads its page_desc, then the stored bytes, and decompresses them by the
/// descriptor's flag (zlib stream, raw LZO1X, raw Snappy block, zstd frame, or stored as-is).
/// A decoded run's <see cref="PhysicalRun.FileOffset"/> is the page_desc index of its first page.
/// </summary>
internal sealed unsafe class KdumpPageDecoder : IPageDecoder
{
    [ThreadStatic]
    private static ZstdSharp.Decompressor? t_zstd;

    private readonly IByteSource _source;
    private readonly long _descBase;
    private readonly long _descCount;
    private readonly int _blockSize;
    private readonly bool _bigEndian;
    private readonly string _format;

    public KdumpPageDecoder(IByteSource source, long descBase, long descCount, int blockSize, bool bigEndian, string format)
    {
        _source = source;
        _descBase = descBase;
        _descCount = descCount;
        _blockSize = blockSize;
        _bigEndian = bigEndian;
        _format = format;
    }

    public int MaxUnitSize => _blockSize;

    public bool TryLocate(in PhysicalRun run, ulong physicalAddress, out DecodeUnit unit)
    {
        ulong page = (physicalAddress - run.PhysicalAddress) / (ulong)_blockSize;
        long index = run.FileOffset + (long)page;
        unit = new DecodeUnit(index, run.PhysicalAddress + page * (ulong)_blockSize, _blockSize);
        return index < _descCount;
    }

    public bool TryDecode(in DecodeUnit unit, Span<byte> destination, out string? problem)
    {
        long descAt = _descBase + unit.Key * KdumpLayout.PageDescSize;
        Span<byte> desc = stackalloc byte[KdumpLayout.PageDescSize];
        if (_source.Read(descAt, desc) != desc.Length)
        {
            problem = $"{_format} page_desc[{unit.Key}] at 0x{descAt:X}: past the end of the file";
            return false;
        }
        long offset = _bigEndian ? BinaryPrimitives.ReadInt64BigEndian(desc) : BinaryPrimitives.ReadInt64LittleEndian(desc);
        uint size = _bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(desc[KdumpLayout.DescSize..]) : BinaryPrimitives.ReadUInt32LittleEndian(desc[KdumpLayout.DescSize..]);
        uint flags = _bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(desc[KdumpLayout.DescFlags..]) : BinaryPrimitives.ReadUInt32LittleEndian(desc[KdumpLayout.DescFlags..]);
        if (size == 0 || size > (uint)_blockSize * 2 || offset <= 0 || offset > _source.Length - size)
        {
            problem = $"{_format} page_desc[{unit.Key}] at 0x{descAt:X}: stored page 0x{offset:X}+0x{size:X} is not inside the file (physical 0x{unit.PhysicalAddress:X})";
            return false;
        }
        byte[]? rented = null;
        try
        {
            ReadOnlySpan<byte> stored;
            if (!_source.TryGetSpan(offset, (int)size, out stored))
            {
                rented = ArrayPool<byte>.Shared.Rent((int)size);
                int read = _source.Read(offset, rented.AsSpan(0, (int)size));
                stored = rented.AsSpan(0, read);
            }
            int produced = Decompress(flags, stored, destination, out problem);
            if (produced != destination.Length)
            {
                problem = $"{_format} page_desc[{unit.Key}] at 0x{descAt:X}: {problem ?? $"page decoded to {produced} bytes, expected {destination.Length}"} (physical 0x{unit.PhysicalAddress:X}, data at 0x{offset:X})";
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

    private static int Decompress(uint flags, ReadOnlySpan<byte> stored, Span<byte> destination, out string? problem)
    {
        problem = null;
        try
        {
            switch (flags & (KdumpLayout.CompressZlib | KdumpLayout.CompressLzo | KdumpLayout.CompressSnappy | KdumpLayout.CompressZstd))
            {
                case 0:
                    if (stored.Length != destination.Length)
                    {
                        problem = $"uncompressed page is {stored.Length} bytes";
                        return -1;
                    }
                    stored.CopyTo(destination);
                    return stored.Length;
                case KdumpLayout.CompressZlib:
                    fixed (byte* p = stored)
                    {
                        using var input = new UnmanagedMemoryStream(p, stored.Length);
                        using var zlib = new ZLibStream(input, CompressionMode.Decompress);
                        return zlib.ReadAtLeast(destination, destination.Length, throwOnEndOfStream: false);
                    }
                case KdumpLayout.CompressLzo:
                    int lzo = Lzo1x.Decompress(stored, destination);
                    if (lzo < 0)
                    {
                        problem = "corrupt LZO1X data";
                    }
                    return lzo;
                case KdumpLayout.CompressSnappy:
                    if (!SnappyBlock.TryDecodeExact(stored, destination))
                    {
                        problem = "Snappy block does not decode to one page";
                        return -1;
                    }
                    return destination.Length;
                case KdumpLayout.CompressZstd:
                    t_zstd ??= new ZstdSharp.Decompressor();
                    return t_zstd.Unwrap(stored, destination);
                default:
                    problem = $"unknown compression flags 0x{flags:X}";
                    return -1;
            }
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentException or InvalidOperationException or IOException or ZstdSharp.ZstdException)
        {
            problem = $"corrupt compressed data ({e.Message})";
            return -1;
        }
    }
}
