namespace CloudMem.VmStateParsers;

/// <summary>
/// Collects the runs a parser finds and enforces the run-table invariants: ascending, non-overlapping,
/// no overflow, below the physical-address limit, within the file for direct runs, and a count cap.
/// Adjacent direct runs that are also adjacent in the file are merged.
/// </summary>
public sealed class RunMapBuilder
{
    private readonly List<PhysicalRun> _runs = [];
    private readonly string _format;
    private readonly ParserLimits _limits;
    private readonly long _fileLength;

    /// <summary>Creates a builder for a file of <paramref name="fileLength"/> bytes.</summary>
    public RunMapBuilder(string format, long fileLength, ParserLimits limits)
    {
        _format = format;
        _fileLength = fileLength;
        _limits = limits;
    }

    /// <summary>Runs so far.</summary>
    public int Count => _runs.Count;

    /// <summary>Bytes of direct runs that lie past the end of the file and were dropped.</summary>
    public ulong TruncatedBytes { get; private set; }

    /// <summary>Adds a run described at <paramref name="describedAt"/> (the header's file offset, for errors).</summary>
    /// <exception cref="FormatErrorException">when an invariant is broken.</exception>
    internal void Add(PhysicalRun run, string structure, long describedAt)
    {
        if (run.Length == 0)
        {
            return;
        }
        if (run.PhysicalAddress > _limits.MaxPhysicalAddress || run.Length > _limits.MaxPhysicalAddress - run.PhysicalAddress)
        {
            throw Fail(structure, describedAt, $"range 0x{run.PhysicalAddress:X}+0x{run.Length:X} goes past the physical-address limit 0x{_limits.MaxPhysicalAddress:X}");
        }
        if (_runs.Count > 0 && run.PhysicalAddress < _runs[^1].End)
        {
            throw Fail(structure, describedAt, $"range 0x{run.PhysicalAddress:X}+0x{run.Length:X} overlaps or precedes the previous range ending at 0x{_runs[^1].End:X}");
        }
        if (run.Storage == RunStorage.Direct)
        {
            if (run.FileOffset < 0)
            {
                throw Fail(structure, describedAt, $"data offset 0x{run.FileOffset:X} is outside the file (length 0x{_fileLength:X})");
            }
            // Data at or past the end of the file is what a truncated copy loses: the range reads as a hole and is
            // counted, the same way for every format (partial results with a warning, never a refusal).
            ulong available = run.FileOffset >= _fileLength ? 0 : (ulong)(_fileLength - run.FileOffset);
            if (run.Length > available)
            {
                // A truncated capture: keep what is there, say what is missing.
                TruncatedBytes += run.Length - available;
                run = run with { Length = available };
                if (run.Length == 0)
                {
                    return;
                }
            }
        }
        if (_runs.Count > 0)
        {
            PhysicalRun last = _runs[^1];
            if (last.Storage == RunStorage.Direct && run.Storage == RunStorage.Direct && last.End == run.PhysicalAddress
                && last.FileOffset + (long)last.Length == run.FileOffset)
            {
                _runs[^1] = last with { Length = last.Length + run.Length };
                return;
            }
            if (last.Storage == RunStorage.Zero && run.Storage == RunStorage.Zero && last.End == run.PhysicalAddress)
            {
                _runs[^1] = last with { Length = last.Length + run.Length };
                return;
            }
        }
        if (_runs.Count >= _limits.MaxRuns)
        {
            throw Fail(structure, describedAt, $"more than {_limits.MaxRuns} runs (ParserLimits.MaxRuns)");
        }
        _runs.Add(run);
    }

    /// <summary>The finished table.</summary>
    public PhysicalRun[] ToArray() => [.. _runs];

    private FormatErrorException Fail(string structure, long offset, string problem)
        => new(new FormatError(_format, structure, offset, problem));
}
