using System.Buffers;

namespace CloudMem.VmStateParsers;

/// <summary>One block handed to a <see cref="ParallelScan"/> handler.</summary>
/// <param name="PhysicalAddress">Physical address of the first byte of the block (and of the data handed over).</param>
/// <param name="Owned">Bytes of the block proper: a match that starts at or after this index belongs to the next block
/// (the bytes past it are the overlap, there so that a match across the boundary is seen whole).</param>
/// <param name="RangeStart">Start of the range (run, or adjacent runs joined) the block lies in.</param>
/// <param name="RangeEnd">End of that range.</param>
public readonly record struct ScanBlock(ulong PhysicalAddress, int Owned, ulong RangeStart, ulong RangeEnd);

/// <summary>
/// Scans every byte a capture holds in fixed-size blocks on several threads, with the results in address order (the
/// order a one-thread scan gives). Direct runs are read in place (<see cref="IDirectSpanAccess"/>, no copy); other
/// runs are read into a per-thread buffer, and a page that cannot be read (an undecodable page) is scanned as zeros.
/// Runs stored as zeros (<see cref="RunStorage.Zero"/>) are never touched unless <c>coalesce</c> joins them to data.
/// </summary>
/// <remarks>Results are gathered a window of blocks at a time, so memory stays bounded by the hits of one window
/// however large the capture; the handler may run on any thread and must keep no shared mutable state.</remarks>
public static class ParallelScan
{
    /// <summary>Receives one block: <paramref name="data"/> holds <see cref="ScanBlock.Owned"/> bytes plus up to the
    /// overlap asked for (less at the end of a range); add results in ascending order.</summary>
    public delegate void BlockHandler<T>(in ScanBlock block, ReadOnlySpan<byte> data, List<T> results);

    /// <summary>Threads a scan uses when the caller does not say: <c>CLOUDMEM_SCAN_THREADS</c> when set (1 gives the
    /// one-thread scan), else the processor count.</summary>
    public static int DefaultDegreeOfParallelism { get; } =
        int.TryParse(Environment.GetEnvironmentVariable("CLOUDMEM_SCAN_THREADS"), out int threads) && threads > 0
            ? Math.Min(threads, 256) : Environment.ProcessorCount;

    /// <summary>Scans <paramref name="memory"/>; yields every block's results in address order.</summary>
    /// <param name="memory">The capture.</param>
    /// <param name="blockSize">Bytes per block (a multiple of 4 KiB keeps blocks page-aligned in page-aligned runs).</param>
    /// <param name="overlap">Bytes read past each block (the longest match less one).</param>
    /// <param name="handler">The search.</param>
    /// <param name="coalesce">Join adjacent runs into one range (a match may straddle runs; zero runs are then scanned
    /// too); false: each run alone, zero runs skipped.</param>
    /// <param name="degreeOfParallelism">Threads; null for <see cref="DefaultDegreeOfParallelism"/>.</param>
    /// <param name="progress">Called after each window with bytes done and the total (bytes of the ranges).</param>
    /// <param name="cancellationToken">Cancellation.</param>
    public static IEnumerable<T> Blocks<T>(IPhysicalMemory memory, int blockSize, int overlap, BlockHandler<T> handler, bool coalesce = false,
        int? degreeOfParallelism = null, Action<long, long>? progress = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(handler);
        ArgumentOutOfRangeException.ThrowIfLessThan(blockSize, 4096);
        ArgumentOutOfRangeException.ThrowIfNegative(overlap);
        int threads = Math.Max(1, degreeOfParallelism ?? DefaultDegreeOfParallelism);
        List<(ulong Start, ulong End)> ranges = Ranges(memory.Runs, coalesce);
        var blocks = new List<ScanBlock>();
        foreach ((ulong start, ulong end) in ranges)
        {
            for (ulong pa = start; pa < end; pa += (ulong)blockSize)
            {
                blocks.Add(new ScanBlock(pa, (int)Math.Min((ulong)blockSize, end - pa), start, end));
            }
        }
        long total = ranges.Sum(r => (long)(r.End - r.Start));
        return Run(memory, blocks, blockSize, overlap, handler, threads, total, progress, cancellationToken);
    }

    private static IEnumerable<T> Run<T>(IPhysicalMemory memory, List<ScanBlock> blocks, int blockSize, int overlap, BlockHandler<T> handler,
        int threads, long total, Action<long, long>? progress, CancellationToken ct)
    {
        int window = threads == 1 ? 1 : threads * 4;
        var results = new List<T>[window];
        long done = 0;
        progress?.Invoke(0, total);
        var options = new ParallelOptions { MaxDegreeOfParallelism = threads, CancellationToken = ct };
        for (int first = 0; first < blocks.Count; first += window)
        {
            ct.ThrowIfCancellationRequested();
            int count = Math.Min(window, blocks.Count - first);
            if (threads == 1)
            {
                results[0] = [];
                ScanOne(memory, blocks[first], blockSize, overlap, handler, results[0]);
            }
            else
            {
                Parallel.For(0, count, options, i =>
                {
                    results[i] = [];
                    ScanOne(memory, blocks[first + i], blockSize, overlap, handler, results[i]);
                });
            }
            for (int i = 0; i < count; i++)
            {
                done += blocks[first + i].Owned;
                foreach (T result in results[i])
                {
                    yield return result;
                }
                results[i] = null!;
            }
            progress?.Invoke(done, total);
        }
    }

    private static void ScanOne<T>(IPhysicalMemory memory, ScanBlock block, int blockSize, int overlap, BlockHandler<T> handler, List<T> results)
    {
        int length = (int)Math.Min((ulong)block.Owned + (ulong)overlap, block.RangeEnd - block.PhysicalAddress);
        if (memory is IDirectSpanAccess direct)
        {
            ReadOnlySpan<byte> span = direct.GetDirectSpan(block.PhysicalAddress, length);
            if (span.Length == length)
            {
                handler(block, span, results);
                direct.ReleaseResident(block.PhysicalAddress, (ulong)block.Owned);
                return;
            }
        }
        byte[] buffer = ArrayPool<byte>.Shared.Rent(blockSize + overlap);
        try
        {
            Span<byte> data = buffer.AsSpan(0, length);
            int got = memory.Read(block.PhysicalAddress, data);
            while (got < length)
            {
                // An unreadable page (undecodable, or a hole the run table did not show): zeros, then go on.
                int page = (int)Math.Min(4096 - ((block.PhysicalAddress + (ulong)got) & 4095), (ulong)(length - got));
                data.Slice(got, page).Clear();
                got += page;
                if (got < length)
                {
                    got += memory.Read(block.PhysicalAddress + (ulong)got, data[got..]);
                }
            }
            handler(block, data, results);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static List<(ulong Start, ulong End)> Ranges(IReadOnlyList<PhysicalRun> runs, bool coalesce)
    {
        var ranges = new List<(ulong Start, ulong End)>();
        foreach (PhysicalRun run in runs.OrderBy(r => r.PhysicalAddress))
        {
            if (!coalesce && run.Storage == RunStorage.Zero)
            {
                continue;
            }
            if (coalesce && ranges.Count > 0 && ranges[^1].End == run.PhysicalAddress)
            {
                ranges[^1] = (ranges[^1].Start, run.End);
            }
            else
            {
                ranges.Add((run.PhysicalAddress, run.End));
            }
        }
        return ranges;
    }
}
