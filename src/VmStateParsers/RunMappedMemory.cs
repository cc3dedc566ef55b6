using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers;

/// <summary>
/// The one <see cref="IPhysicalMemory"/> implementation every file format uses: a validated run table over a
/// byte source, with zero-copy reads for direct runs and a bounded cache in front of the format's
/// <see cref="IPageDecoder"/> for decoded runs.
/// </summary>
/// <remarks>Owns the byte source and disposes it. Safe for concurrent readers.</remarks>
public sealed class RunMappedMemory : IPhysicalMemory, IDirectSpanAccess, ICaptureMetadata
{
    private readonly IByteSource _source;
    private readonly PhysicalRun[] _runs;
    private readonly IPageDecoder? _decoder;
    private readonly DecodeCache? _cache;
    private int _hint;
    private long _decodeFailures;
    private string? _lastDecodeProblem;

    internal RunMappedMemory(string description, IByteSource source, PhysicalRun[] runs, IPageDecoder? decoder, CaptureMetadata metadata, ParserLimits limits)
    {
        Description = description;
        _source = source;
        _runs = runs;
        _decoder = decoder;
        Metadata = metadata;
        MaxAddress = runs.Length == 0 ? 0 : runs[^1].End;
        if (decoder is not null)
        {
            _cache = new DecodeCache(decoder.MaxUnitSize, limits.DecodeCacheBytes);
        }
    }

    /// <inheritdoc />
    public string Description { get; }

    /// <inheritdoc />
    public IReadOnlyList<PhysicalRun> Runs => _runs;

    /// <inheritdoc />
    public ulong MaxAddress { get; }

    /// <inheritdoc />
    public CaptureMetadata Metadata { get; }

    /// <summary>For a capture read in place from object storage: what reading it cost so far; null for a local file.</summary>
    public Remote.RemoteReadStats? RemoteStats { get; internal set; }

    /// <summary>How many decode units failed to decode so far (each failure is also a short read).</summary>
    public long DecodeFailures => Interlocked.Read(ref _decodeFailures);

    /// <summary>The last decoding problem, if any.</summary>
    public string? LastDecodeProblem => Volatile.Read(ref _lastDecodeProblem);

    /// <inheritdoc />
    public int Read(ulong physicalAddress, Span<byte> destination)
    {
        int total = 0;
        while (!destination.IsEmpty)
        {
            int index = FindRun(physicalAddress);
            if (index < 0)
            {
                break;
            }
            PhysicalRun run = _runs[index];
            ulong offsetInRun = physicalAddress - run.PhysicalAddress;
            int count = (int)Math.Min((ulong)destination.Length, run.Length - offsetInRun);
            Span<byte> target = destination[..count];
            int done;
            switch (run.Storage)
            {
                case RunStorage.Direct:
                    done = _source.Read(run.FileOffset + (long)offsetInRun, target);
                    break;
                case RunStorage.Zero:
                    target.Clear();
                    done = count;
                    break;
                default:
                    done = ReadDecoded(run, physicalAddress, target);
                    break;
            }
            total += done;
            if (done < count)
            {
                break;
            }
            physicalAddress += (ulong)count;
            destination = destination[count..];
        }
        return total;
    }

    /// <inheritdoc />
    public ReadOnlySpan<byte> GetDirectSpan(ulong physicalAddress, int maxLength)
    {
        int index = FindRun(physicalAddress);
        if (index < 0 || _runs[index].Storage != RunStorage.Direct || maxLength <= 0)
        {
            return ReadOnlySpan<byte>.Empty;
        }
        PhysicalRun run = _runs[index];
        ulong offsetInRun = physicalAddress - run.PhysicalAddress;
        int count = (int)Math.Min((ulong)maxLength, run.Length - offsetInRun);
        return _source.TryGetScanSpan(run.FileOffset + (long)offsetInRun, count, out ReadOnlySpan<byte> span) ? span : ReadOnlySpan<byte>.Empty;
    }

    /// <inheritdoc />
    public void ReleaseResident(ulong physicalAddress, ulong length)
    {
        ulong end = physicalAddress + length;
        int index = FindRun(physicalAddress);
        if (index < 0)
        {
            index = FirstRunAtOrAfter(physicalAddress);
        }
        for (; index >= 0 && index < _runs.Length && _runs[index].PhysicalAddress < end; index++)
        {
            PhysicalRun run = _runs[index];
            if (run.Storage != RunStorage.Direct)
            {
                continue;
            }
            ulong from = Math.Max(run.PhysicalAddress, physicalAddress);
            ulong to = Math.Min(run.End, end);
            _source.ReleaseResident(run.FileOffset + (long)(from - run.PhysicalAddress), (long)(to - from));
        }
    }

    /// <summary>Index of the run holding <paramref name="physicalAddress"/>, or -1.</summary>
    public int FindRun(ulong physicalAddress)
    {
        PhysicalRun[] runs = _runs;
        int hint = _hint;
        if ((uint)hint < (uint)runs.Length && runs[hint].Contains(physicalAddress))
        {
            return hint;
        }
        int lo = 0;
        int hi = runs.Length - 1;
        while (lo <= hi)
        {
            int mid = (int)((uint)(lo + hi) >> 1);
            PhysicalRun run = runs[mid];
            if (physicalAddress < run.PhysicalAddress)
            {
                hi = mid - 1;
            }
            else if (physicalAddress - run.PhysicalAddress >= run.Length)
            {
                lo = mid + 1;
            }
            else
            {
                _hint = mid;
                return mid;
            }
        }
        return -1;
    }

    private int FirstRunAtOrAfter(ulong physicalAddress)
    {
        int lo = 0;
        int hi = _runs.Length;
        while (lo < hi)
        {
            int mid = (lo + hi) >> 1;
            if (_runs[mid].End <= physicalAddress)
            {
                lo = mid + 1;
            }
            else
            {
                hi = mid;
            }
        }
        return lo;
    }

    private int ReadDecoded(in PhysicalRun run, ulong physicalAddress, Span<byte> target)
    {
        IPageDecoder decoder = _decoder!;
        DecodeCache cache = _cache!;
        int total = 0;
        while (!target.IsEmpty)
        {
            if (!decoder.TryLocate(run, physicalAddress, out DecodeUnit unit))
            {
                RecordFailure($"no decode unit holds physical address 0x{physicalAddress:X}");
                break;
            }
            int offsetInUnit = (int)(physicalAddress - unit.PhysicalAddress);
            int count = Math.Min(target.Length, unit.Length - offsetInUnit);
            if (count <= 0)
            {
                break;
            }
            Span<byte> part = target[..count];
            if (!cache.TryCopy(unit.Key, offsetInUnit, part))
            {
                bool ok = offsetInUnit == 0 && count == unit.Length
                    ? DecodeInto(decoder, unit, part)
                    : cache.Fill(unit, decoder, offsetInUnit, part, this);
                if (!ok)
                {
                    break;
                }
            }
            total += count;
            physicalAddress += (ulong)count;
            target = target[count..];
        }
        return total;
    }

    private bool DecodeInto(IPageDecoder decoder, in DecodeUnit unit, Span<byte> destination)
    {
        if (decoder.TryDecode(unit, destination, out string? problem))
        {
            return true;
        }
        RecordFailure(problem ?? "decode failed");
        return false;
    }

    internal void RecordFailure(string problem)
    {
        Interlocked.Increment(ref _decodeFailures);
        Volatile.Write(ref _lastDecodeProblem, problem);
    }

    /// <inheritdoc />
    public void Dispose() => _source.Dispose();

    /// <summary>
    /// Bounded cache of decoded units: a fixed array of slots indexed by a hash of the unit key
    /// (direct-mapped, so eviction costs nothing and memory never grows past the budget).
    /// </summary>
    private sealed class DecodeCache
    {
        private readonly Slot[] _slots;
        private readonly int _shift;
        private readonly int _unitSize;

        public DecodeCache(int unitSize, int budgetBytes)
        {
            _unitSize = unitSize;
            int count = Math.Max(16, budgetBytes / Math.Max(1, unitSize));
            int bits = 63 - System.Numerics.BitOperations.LeadingZeroCount((ulong)count);
            _slots = new Slot[1 << bits];
            for (int i = 0; i < _slots.Length; i++)
            {
                _slots[i] = new Slot();
            }
            _shift = 64 - bits;
        }

        private Slot SlotFor(long key) => _slots[(int)(unchecked((ulong)key * 0x9E3779B97F4A7C15UL) >> _shift)];

        public bool TryCopy(long key, int offset, Span<byte> destination)
        {
            Slot slot = SlotFor(key);
            lock (slot)
            {
                if (slot.Key != key || slot.Data is null)
                {
                    return false;
                }
                slot.Data.AsSpan(offset, destination.Length).CopyTo(destination);
                return true;
            }
        }

        public bool Fill(in DecodeUnit unit, IPageDecoder decoder, int offset, Span<byte> destination, RunMappedMemory owner)
        {
            Slot slot = SlotFor(unit.Key);
            lock (slot)
            {
                slot.Data ??= new byte[_unitSize];
                slot.Key = -1;
                if (!decoder.TryDecode(unit, slot.Data.AsSpan(0, unit.Length), out string? problem))
                {
                    owner.RecordFailure(problem ?? "decode failed");
                    return false;
                }
                slot.Key = unit.Key;
                slot.Data.AsSpan(offset, destination.Length).CopyTo(destination);
                return true;
            }
        }

        private sealed class Slot
        {
            public long Key = -1;
            public byte[]? Data;
        }
    }
}
