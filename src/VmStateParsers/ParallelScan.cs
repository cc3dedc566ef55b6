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
/// <remarks>Scan threads may run only a few blocks ahead of the caller's enumeration, so memory stays bounded by the
/// hits (and mapped pages) of those blocks however large the capture; the handler may run on any thread and must keep
/// no shared mutable state. Stopping the enumeration early (or an exception from the handler, rethrown as itself)
/// stops the scan threads.</remarks>
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
        progress?.Invoke(0, total);
        return threads == 1 || blocks.Count < 2
            ? RunOneThread(memory, blocks, blockSize, overlap, handler, total, progress, ct)
            : RunWorkers(memory, blocks, blockSize, overlap, handler, Math.Min(threads, blocks.Count), total, progress, ct);
    }

    private static IEnumerable<T> RunOneThread<T>(IPhysicalMemory memory, List<ScanBlock> blocks, int blockSize, int overlap, BlockHandler<T> handler,
        long total, Action<long, long>? progress, CancellationToken ct)
    {
        long done = 0;
        var results = new List<T>();
        foreach (ScanBlock block in blocks)
        {
            ct.ThrowIfCancellationRequested();
            results.Clear();
            ScanOne(memory, block, blockSize, overlap, handler, results, release: true);
            foreach (T result in results)
            {
                yield return result;
            }
            done += block.Owned;
            progress?.Invoke(done, total);
        }
    }

    /// <summary>
    /// Scan threads of their own (not the thread pool, whose second thread may come late) take the blocks in address
    /// order and stream through memory side by side; the caller's thread hands the results on in block order and drops
    /// the blocks' mapped pages behind them in batches, so the scan never waits at a barrier between windows. A scan
    /// thread may run at most <see cref="BlocksAhead"/> blocks per thread ahead of the caller, which bounds the results
    /// held and the pages mapped.
    /// </summary>
    private static IEnumerable<T> RunWorkers<T>(IPhysicalMemory memory, List<ScanBlock> blocks, int blockSize, int overlap, BlockHandler<T> handler,
        int threads, long total, Action<long, long>? progress, CancellationToken ct)
    {
        var results = new List<T>?[blocks.Count];
        var gate = new object();
        int next = -1;
        System.Runtime.ExceptionServices.ExceptionDispatchInfo? failure = null;
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(ct);
        using var room = new SemaphoreSlim(threads * BlocksAhead);
        var workers = new Thread[threads];
        for (int w = 0; w < threads; w++)
        {
            workers[w] = new Thread(() =>
            {
                try
                {
                    while (true)
                    {
                        room.Wait(stop.Token);
                        int i = Interlocked.Increment(ref next);
                        if (i >= blocks.Count)
                        {
                            return;
                        }
                        var found = new List<T>();
                        ScanOne(memory, blocks[i], blockSize, overlap, handler, found, release: false);
                        lock (gate)
                        {
                            results[i] = found;
                            Monitor.PulseAll(gate);
                        }
                    }
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                }
                catch (Exception e)
                {
                    lock (gate)
                    {
                        failure ??= System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
                        Monitor.PulseAll(gate);
                    }
                }
            }) { IsBackground = true, Name = "cloudmem scan" };
            workers[w].Start();
        }
        try
        {
            long done = 0;
            for (int i = 0; i < blocks.Count; i++)
            {
                List<T>? found;
                lock (gate)
                {
                    while ((found = results[i]) is null && failure is null && !ct.IsCancellationRequested)
                    {
                        Monitor.Wait(gate, 50);
                    }
                    results[i] = null;
                }
                ct.ThrowIfCancellationRequested();
                failure?.Throw();
                room.Release();
                if ((i + 1) % ReleaseBatch == 0 || i == blocks.Count - 1)
                {
                    ReleaseBehind(memory, blocks, i - (i % ReleaseBatch), i + 1);
                }
                foreach (T result in found!)
                {
                    yield return result;
                }
                done += blocks[i].Owned;
                progress?.Invoke(done, total);
            }
        }
        finally
        {
            stop.Cancel();
            foreach (Thread worker in workers)
            {
                worker.Join();
            }
        }
    }

    /// <summary>Blocks per scan thread that may be scanned before the caller has taken the earlier blocks' results.</summary>
    private const int BlocksAhead = 2;

    /// <summary>
    /// Blocks whose mapped pages are dropped in one call. With several scan threads in one address space each drop
    /// interrupts the other cores to flush their TLBs; once per 4 MiB block cost 15-25 ms of a 4 GiB scan on 2 cores.
    /// </summary>
    private const int ReleaseBatch = 4;

    private static void ReleaseBehind(IPhysicalMemory memory, List<ScanBlock> blocks, int from, int to)
    {
        if (memory is not IDirectSpanAccess direct)
        {
            return;
        }
        int i = from;
        while (i < to)
        {
            ulong start = blocks[i].PhysicalAddress, end = start + (ulong)blocks[i].Owned;
            for (i++; i < to && blocks[i].PhysicalAddress == end; i++)
            {
                end += (ulong)blocks[i].Owned;
            }
            direct.ReleaseResident(start, end - start);
        }
    }

    private static void ScanOne<T>(IPhysicalMemory memory, ScanBlock block, int blockSize, int overlap, BlockHandler<T> handler, List<T> results,
        bool release)
    {
        int length = (int)Math.Min((ulong)block.Owned + (ulong)overlap, block.RangeEnd - block.PhysicalAddress);
        if (memory is IDirectSpanAccess direct)
        {
            ReadOnlySpan<byte> span = direct.GetDirectSpan(block.PhysicalAddress, length);
            if (span.Length == length)
            {
                handler(block, span, results);
                if (release)
                {
                    direct.ReleaseResident(block.PhysicalAddress, (ulong)block.Owned);
                }
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
