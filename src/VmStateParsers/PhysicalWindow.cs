namespace CloudMem.VmStateParsers;

/// <summary>A view of [start, end) of a capture: its runs clipped to the window, reads passed through.</summary>
public sealed class PhysicalWindow(IPhysicalMemory inner, ulong start, ulong end) : IPhysicalMemory, IDirectSpanAccess
{
    private readonly PhysicalRun[] _runs = inner.Runs
        .Where(r => r.End > start && r.PhysicalAddress < end)
        .Select(r =>
        {
            ulong from = Math.Max(r.PhysicalAddress, start);
            ulong to = Math.Min(r.End, end);
            long offset = r.Storage == RunStorage.Direct ? r.FileOffset + (long)(from - r.PhysicalAddress) : r.FileOffset;
            return new PhysicalRun(from, to - from, offset, r.Storage);
        })
        .ToArray();

    /// <inheritdoc />
    public IReadOnlyList<PhysicalRun> Runs => _runs;

    /// <inheritdoc />
    public ulong MaxAddress => _runs.Length == 0 ? start : _runs[^1].End;

    /// <inheritdoc />
    public string Description => inner.Description;

    /// <inheritdoc />
    public int Read(ulong physicalAddress, Span<byte> destination)
    {
        if (physicalAddress < start || physicalAddress >= end)
        {
            return 0;
        }
        int count = (int)Math.Min((ulong)destination.Length, end - physicalAddress);
        return inner.Read(physicalAddress, destination[..count]);
    }

    /// <inheritdoc />
    public ReadOnlySpan<byte> GetDirectSpan(ulong physicalAddress, int maxLength)
        => inner is IDirectSpanAccess direct && physicalAddress >= start && physicalAddress < end
            ? direct.GetDirectSpan(physicalAddress, (int)Math.Min((ulong)maxLength, end - physicalAddress))
            : ReadOnlySpan<byte>.Empty;

    /// <inheritdoc />
    public void ReleaseResident(ulong physicalAddress, ulong length) => (inner as IDirectSpanAccess)?.ReleaseResident(physicalAddress, length);

    /// <inheritdoc />
    public void Dispose()
    {
    }
}
