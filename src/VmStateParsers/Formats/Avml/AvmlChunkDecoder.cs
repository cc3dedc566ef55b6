using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Avml;

/// <summary>Compact index of AVML data chunks, in physical order (struct-of-arrays).</summary>
internal sealed class ChunkIndex
{
    private ulong[] _physical = new ulong[1024];
    private long[] _file = new long[1024];
    private int[] _stored = new int[1024];
    private int[] _size = new int[1024];
    private bool[] _compressed = new bool[1024];

    public int Count { get; private set; }

    public void Add(ulong physical, long fileOffset, int stored, int size, bool compressed)
    {
        if (Count == _physical.Length)
        {
            int grow = _physical.Length * 2;
            Array.Resize(ref _physical, grow);
            Array.Resize(ref _file, grow);
            Array.Resize(ref _stored, grow);
            Array.Resize(ref _size, grow);
            Array.Resize(ref _compressed, grow);
        }
        _physical[Count] = physical;
        _file[Count] = fileOffset;
        _stored[Count] = stored;
        _size[Count] = size;
        _compressed[Count] = compressed;
        Count++;
    }

    public ChunkIndex Freeze()
    {
        Array.Resize(ref _physical, Count);
        Array.Resize(ref _file, Count);
        Array.Resize(ref _stored, Count);
        Array.Resize(ref _size, Count);
        Array.Resize(ref _compressed, Count);
        return this;
    }

    public ulong Physical(int i) => _physical[i];
    public long File(int i) => _file[i];
    public int Stored(int i) => _stored[i];
    public int Size(int i) => _size[i];
    public bool Compressed(int i) => _compressed[i];

    /// <summary>Index of the last chunk starting at or below <paramref name="physical"/> within [from, Count).</summary>
    public int Find(int from, ulong physical)
    {
        int lo = from;
        int hi = Count - 1;
        int found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (_physical[mid] <= physical)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
        return found;
    }
}

/// <summary>Decodes one Snappy chunk of an AVML file (the run's key is the index of its first chunk).</summary>
internal sealed class AvmlChunkDecoder(IByteSource file, ChunkIndex index) : IPageDecoder
{
    public int MaxUnitSize => AvmlLayout.MaxChunkData;

    public bool TryLocate(in PhysicalRun run, ulong physicalAddress, out DecodeUnit unit)
    {
        int i = index.Find((int)run.FileOffset, physicalAddress);
        if (i < 0 || physicalAddress - index.Physical(i) >= (ulong)index.Size(i))
        {
            unit = default;
            return false;
        }
        unit = new DecodeUnit(i, index.Physical(i), index.Size(i));
        return true;
    }

    public bool TryDecode(in DecodeUnit unit, Span<byte> destination, out string? problem)
    {
        int i = (int)unit.Key;
        ReadOnlySpan<byte> stored = file.Span(index.File(i), index.Stored(i));
        problem = null;
        if (!index.Compressed(i))
        {
            stored.CopyTo(destination);
            return true;
        }
        if (Codecs.SnappyBlock.TryDecodeExact(stored, destination))
        {
            return true;
        }
        problem = $"AVML snappy chunk at 0x{index.File(i) - 8:X} is corrupt (does not decode to {destination.Length} bytes)";
        return false;
    }
}
