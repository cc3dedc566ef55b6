namespace CloudMem.VmStateParsers;

/// <summary>How the bytes of a <see cref="PhysicalRun"/> are stored.</summary>
public enum RunStorage : byte
{
    /// <summary>Stored as-is in the file at <see cref="PhysicalRun.FileOffset"/>.</summary>
    Direct = 0,
    /// <summary>Known to be zero without being stored (an ELF segment's p_memsz beyond p_filesz).</summary>
    Zero = 1,
    /// <summary>Stored compressed or encoded; <see cref="PhysicalRun.FileOffset"/> is a key for the format's <see cref="IPageDecoder"/>.</summary>
    Decoded = 2,
}

/// <summary>
/// One contiguous range of guest-physical memory that a capture holds.
/// </summary>
/// <param name="PhysicalAddress">First guest-physical byte.</param>
/// <param name="Length">Bytes covered; never zero.</param>
/// <param name="FileOffset">For <see cref="RunStorage.Direct"/>, the file offset of <paramref name="PhysicalAddress"/>;
/// for <see cref="RunStorage.Decoded"/>, a decoder-defined key; otherwise -1.</param>
/// <param name="Storage">How the bytes are stored.</param>
public readonly record struct PhysicalRun(ulong PhysicalAddress, ulong Length, long FileOffset, RunStorage Storage = RunStorage.Direct)
{
    /// <summary>One past the last physical byte.</summary>
    public ulong End => PhysicalAddress + Length;

    /// <summary>True when <paramref name="physicalAddress"/> lies in this run.</summary>
    public bool Contains(ulong physicalAddress) => physicalAddress >= PhysicalAddress && physicalAddress - PhysicalAddress < Length;
}

/// <summary>
/// The one contract every capture format reduces to: a flat guest-physical address space.
/// </summary>
/// <remarks>
/// <para>Reads never throw for holes, truncated files or undecodable pages: <see cref="Read"/> returns how many bytes
/// it copied from the start of the request, and a short count means the next byte is not available (a hole, the end of
/// the capture, or a page that could not be decoded).</para>
/// <para>Implementations are safe for concurrent readers. Disposing while reads are in flight is a caller error.</para>
/// <para>The bytes never change while the capture is open (evidence is read-only): readers may cache them, and the
/// page-table walker does (a cache of table pages per instance). A test double that patches bytes patches them before
/// the first read.</para>
/// </remarks>
public interface IPhysicalMemory : IDisposable
{
    /// <summary>Copies bytes starting at <paramref name="physicalAddress"/> into <paramref name="destination"/>.</summary>
    /// <returns>The number of bytes copied; less than <c>destination.Length</c> when the read reaches a hole.</returns>
    int Read(ulong physicalAddress, Span<byte> destination);

    /// <summary>The runs the capture holds, sorted by address and never overlapping.</summary>
    IReadOnlyList<PhysicalRun> Runs { get; }

    /// <summary>One past the highest physical address held (0 for an empty capture).</summary>
    ulong MaxAddress { get; }

    /// <summary>A short human description, e.g. the format and the file name.</summary>
    string Description { get; }
}

/// <summary>Optional ability: zero-copy access to the stored bytes of <see cref="RunStorage.Direct"/> runs.</summary>
public interface IDirectSpanAccess
{
    /// <summary>
    /// Returns a read-only span over the stored bytes at <paramref name="physicalAddress"/>, at most
    /// <paramref name="maxLength"/> long and never crossing the end of a run; empty when the address is not in a
    /// direct run. The span stays valid until the capture is disposed. Meant for sequential readers (scans, hashing)
    /// that call <see cref="ReleaseResident"/> behind them: a local file serves these spans from a view mapped for
    /// huge pages, where each touch maps up to 2 MiB.
    /// </summary>
    ReadOnlySpan<byte> GetDirectSpan(ulong physicalAddress, int maxLength);

    /// <summary>
    /// Hint that the caller is done with the given physical range (sequential scans call it so that resident
    /// file pages of a memory-mapped capture are dropped from this process; the data stays in the OS page cache).
    /// </summary>
    void ReleaseResident(ulong physicalAddress, ulong length);
}

/// <summary>Optional ability: what the file says about the captured machine (headers, notes, CPU state).</summary>
public interface ICaptureMetadata
{
    /// <summary>The metadata; never null.</summary>
    CaptureMetadata Metadata { get; }
}
