using System.Runtime.ExceptionServices;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Core;

/// <summary>
/// Per-item work (one process's user-space walk, say) spread over the scan threads, with the results in the items'
/// order, so the rows are the same whatever the thread count. The work must only read shared state: the address spaces,
/// page-table cache and small-read cache it goes through are safe for concurrent readers.
/// </summary>
internal static class OrderedParallel
{
    /// <summary>Fewer items than this per thread run on the caller's thread alone: a thread's start costs more than they do.</summary>
    private const int MinimumItemsPerThread = 16;

    /// <summary>
    /// <paramref name="map"/> of every item, in item order. Threads: <see cref="ParallelScan.DefaultDegreeOfParallelism"/>
    /// (<c>CLOUDMEM_SCAN_THREADS=1</c> gives the one-thread run). An exception from the work stops the items not yet
    /// started and is rethrown as itself, not wrapped (the lowest item's when several failed).
    /// </summary>
    /// <param name="items">The items.</param>
    /// <param name="map">The work for one item.</param>
    /// <param name="ct">Cancellation.</param>
    /// <param name="degreeOfParallelism">Threads (at most one per item); null for the default, which keeps short lists on one thread.</param>
    public static TResult[] Map<TItem, TResult>(IReadOnlyList<TItem> items, Func<TItem, TResult> map, CancellationToken ct, int? degreeOfParallelism = null)
    {
        ArgumentNullException.ThrowIfNull(items);
        ArgumentNullException.ThrowIfNull(map);
        var results = new TResult[items.Count];
        int threads = degreeOfParallelism is int asked
            ? Math.Min(asked, items.Count)
            : Math.Min(ParallelScan.DefaultDegreeOfParallelism, items.Count / MinimumItemsPerThread);
        if (threads <= 1)
        {
            for (int i = 0; i < items.Count; i++)
            {
                ct.ThrowIfCancellationRequested();
                results[i] = map(items[i]);
            }
            return results;
        }
        var failures = new ExceptionDispatchInfo?[items.Count];
        int failed = 0;
        Parallel.For(0, items.Count, new ParallelOptions { MaxDegreeOfParallelism = threads, CancellationToken = ct }, (i, state) =>
        {
            try
            {
                results[i] = map(items[i]);
            }
            catch (Exception e)
            {
                failures[i] = ExceptionDispatchInfo.Capture(e);
                Interlocked.Exchange(ref failed, 1);
                state.Stop();
            }
        });
        if (failed != 0)
        {
            failures.First(f => f is not null)!.Throw();
        }
        return results;
    }
}
