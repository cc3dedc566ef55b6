namespace CloudMem.VmStateParsers.Writing;

/// <summary>A stretch of whole pages of physical memory, [<see cref="Start"/>, <see cref="End"/>) in bytes.</summary>
public readonly record struct PageRange(ulong Start, ulong End)
{
    /// <summary>Bytes covered.</summary>
    public ulong Length => End - Start;

    /// <summary>Number of the first page.</summary>
    public ulong FirstPage(int pageSize) => Start / (ulong)pageSize;

    /// <summary>Pages covered.</summary>
    public ulong Pages(int pageSize) => Length / (ulong)pageSize;
}

/// <summary>
/// What the page-based writers (crash dump, swsusp, Hyper-V, hibernation, VMware) share: a capture's runs widened to
/// whole pages, and whole pages read out of a capture whose runs need not be page-aligned.
/// </summary>
public static class PageRanges
{
    /// <summary>
    /// The runs widened to whole pages of <paramref name="pageSize"/> bytes; runs that then touch or share a page are
    /// merged. <paramref name="paddingBytes"/> is what the widening added (bytes the source does not hold).
    /// </summary>
    public static List<PageRange> Widen(IReadOnlyList<PhysicalRun> runs, int pageSize, out ulong paddingBytes)
    {
        ulong mask = (ulong)pageSize - 1;
        var ranges = new List<PageRange>();
        ulong pageBytes = 0;
        ulong sourceBytes = 0;
        foreach (PhysicalRun run in runs)
        {
            sourceBytes += run.Length;
            ulong start = run.PhysicalAddress & ~mask;
            ulong end = (run.End + mask) & ~mask;
            if (ranges.Count > 0 && start <= ranges[^1].End)
            {
                PageRange last = ranges[^1];
                if (end > last.End)
                {
                    pageBytes += end - last.End;
                    ranges[^1] = last with { End = end };
                }
                continue;
            }
            ranges.Add(new PageRange(start, end));
            pageBytes += end - start;
        }
        paddingBytes = pageBytes - sourceBytes;
        return ranges;
    }

    /// <summary>The runs widened to whole pages (see <see cref="Widen(IReadOnlyList{PhysicalRun}, int, out ulong)"/>).</summary>
    public static List<PageRange> Widen(IReadOnlyList<PhysicalRun> runs, int pageSize) => Widen(runs, pageSize, out _);

    /// <summary>Every page number touched by a run, ascending, once.</summary>
    public static IEnumerable<ulong> PageNumbers(IReadOnlyList<PhysicalRun> runs, int pageSize)
    {
        foreach (PageRange range in Widen(runs, pageSize))
        {
            ulong end = range.End / (ulong)pageSize;
            for (ulong page = range.FirstPage(pageSize); page < end; page++)
            {
                yield return page;
            }
        }
    }
}

/// <summary>
/// Reads page-aligned ranges of a capture whose runs need not be page-aligned: bytes outside every run read as zero,
/// and a hole inside a run (an undecodable page) is zero up to the next page boundary and counted.
/// Reads going forward reuse the last run position; a read that goes back starts the search again.
/// </summary>
/// <remarks>Not thread-safe (one per writer).</remarks>
public sealed class PageReader(IPhysicalMemory memory, int pageSize)
{
    private readonly IReadOnlyList<PhysicalRun> _runs = memory.Runs;
    private int _run;

    /// <summary>Captured bytes that could not be read so far (written as zero).</summary>
    public ulong UnreadableBytes { get; private set; }

    /// <summary>Reads [<paramref name="start"/>, start + destination.Length) into <paramref name="destination"/>, which is cleared first.</summary>
    /// <returns>Bytes inside runs that could not be read.</returns>
    public ulong Read(ulong start, Span<byte> destination)
    {
        destination.Clear();
        ulong end = start + (ulong)destination.Length;
        if (_run > 0 && _runs[_run - 1].End > start)
        {
            _run = 0;
        }
        while (_run < _runs.Count && _runs[_run].End <= start)
        {
            _run++;
        }
        ulong missing = 0;
        for (int r = _run; r < _runs.Count && _runs[r].PhysicalAddress < end; r++)
        {
            ulong from = Math.Max(start, _runs[r].PhysicalAddress);
            ulong to = Math.Min(end, _runs[r].End);
            Span<byte> target = destination.Slice((int)(from - start), (int)(to - from));
            while (!target.IsEmpty)
            {
                int read = memory.Read(from, target);
                if (read >= target.Length)
                {
                    break;
                }
                // A hole inside a run: skip to the next page boundary, leaving zeros.
                int skip = (int)Math.Min((ulong)target.Length, (ulong)read + (ulong)pageSize - ((from + (ulong)read) % (ulong)pageSize));
                missing += (ulong)(skip - read);
                target[read..skip].Clear();
                from += (ulong)skip;
                target = target[skip..];
            }
        }
        UnreadableBytes += missing;
        return missing;
    }
}
