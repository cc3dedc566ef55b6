namespace CloudMem.VmStateParsers.Remote;

/// <summary>How a remote capture is cached and fetched.</summary>
public sealed record RemoteReadOptions
{
    /// <summary>Cache block size in bytes: the unit of fetching and caching (a power of two, 4 KiB to 4 MiB). Default 16 KiB:
    /// a page-table walk or a task_struct costs one small request, not a large one.</summary>
    public int BlockSize { get; init; } = 16 * 1024;

    /// <summary>Most bytes of fetched blocks kept in memory (least recently used blocks are dropped first). Default 256 MiB.</summary>
    public long CacheBytes { get; init; } = 256L * 1024 * 1024;

    /// <summary>Most blocks read ahead of a sequential reader (the window doubles on each sequential miss up to this). Default 1 MiB worth.</summary>
    public int MaxReadaheadBytes { get; init; } = 1024 * 1024;

    /// <summary>Largest single ranged request; adjacent missing blocks are coalesced up to this. Default 4 MiB.</summary>
    public int MaxRequestBytes { get; init; } = 4 * 1024 * 1024;

    /// <summary>Ranged requests in flight at once per object. Default 8.</summary>
    public int MaxConcurrentRequests { get; init; } = 8;

    /// <summary>The defaults.</summary>
    public static RemoteReadOptions Default { get; } = new();

    internal void Validate()
    {
        if (BlockSize < 4096 || BlockSize > 4 * 1024 * 1024 || (BlockSize & (BlockSize - 1)) != 0)
        {
            throw new ArgumentOutOfRangeException(nameof(BlockSize), BlockSize, "a power of two from 4 KiB to 4 MiB");
        }
        if (CacheBytes < BlockSize * 4L)
        {
            throw new ArgumentOutOfRangeException(nameof(CacheBytes), CacheBytes, "at least four blocks");
        }
        if (MaxRequestBytes < BlockSize || MaxReadaheadBytes < 0 || MaxConcurrentRequests < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRequestBytes), "MaxRequestBytes must hold a block, MaxReadaheadBytes >= 0, MaxConcurrentRequests >= 1");
        }
    }
}

/// <summary>What reading a remote capture cost so far. Counters are updated atomically; read them any time.</summary>
public sealed class RemoteReadStats
{
    private long _bytesFetched;
    private long _requests;
    private long _hits;
    private long _misses;
    private long _failures;
    private string? _lastFailure;

    internal RemoteReadStats(string displayName, long objectLength)
    {
        DisplayName = displayName;
        ObjectLength = objectLength;
    }

    /// <summary>The object (no credentials).</summary>
    public string DisplayName { get; }

    /// <summary>The object's length.</summary>
    public long ObjectLength { get; }

    /// <summary>Bytes received from the store.</summary>
    public long BytesFetched => Interlocked.Read(ref _bytesFetched);

    /// <summary>Ranged requests that succeeded (the transport's retries inside one are not counted again).</summary>
    public long Requests => Interlocked.Read(ref _requests);

    /// <summary>Blocks served from the cache (or from a fetch another reader had already started).</summary>
    public long CacheHits => Interlocked.Read(ref _hits);

    /// <summary>Blocks that had to be fetched (including read-ahead blocks).</summary>
    public long CacheMisses => Interlocked.Read(ref _misses);

    /// <summary>Ranged requests that failed after the transport's retries (each one a short read).</summary>
    public long Failures => Interlocked.Read(ref _failures);

    /// <summary>The last failure, or null.</summary>
    public string? LastFailure => Volatile.Read(ref _lastFailure);

    /// <summary>Fetched bytes as a percentage of the object.</summary>
    public double PercentFetched => ObjectLength == 0 ? 0 : 100.0 * BytesFetched / ObjectLength;

    internal void Fetched(long bytes)
    {
        Interlocked.Add(ref _bytesFetched, bytes);
        Interlocked.Increment(ref _requests);
    }

    internal void Hit(int blocks) => Interlocked.Add(ref _hits, blocks);

    internal void Miss(int blocks) => Interlocked.Add(ref _misses, blocks);

    internal void Failed(string problem)
    {
        Interlocked.Increment(ref _failures);
        Volatile.Write(ref _lastFailure, problem);
    }

    /// <summary>One line: bytes fetched (and % of the object), requests, cache hits and misses, failures.</summary>
    public override string ToString()
        => string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"{DisplayName}: fetched {BytesFetched} bytes ({PercentFetched:0.00}% of {ObjectLength}) in {Requests} requests; cache hits {CacheHits}, misses {CacheMisses}; failed requests {Failures}{(LastFailure is null ? "" : $" (last: {LastFailure})")}");
}
