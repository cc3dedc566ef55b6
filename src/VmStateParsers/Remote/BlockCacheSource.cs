using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Remote;

/// <summary>
/// A remote object as an <see cref="IByteSource"/>: reads go through a bounded LRU cache of fixed-size blocks.
/// Missing blocks of one read are coalesced into as few ranged requests as possible (adjacent blocks in one request,
/// up to <see cref="RemoteReadOptions.MaxRequestBytes"/>); separate ranges are fetched concurrently; a reader that
/// keeps reading forward gets a read-ahead window that doubles on each sequential miss. Two readers missing the same
/// block share one fetch.
/// </summary>
/// <remarks>
/// Owns the <see cref="IRangeReader"/> and disposes it. Safe for concurrent readers. <see cref="Read"/> never throws
/// for a failed fetch (the transport has already retried): it returns a short read, and the failure is counted in
/// <see cref="Stats"/>, so parsers see a truncated structure and analysis sees a hole (C5).
/// </remarks>
internal sealed class BlockCacheSource : IByteSource
{
    private readonly IRangeReader _reader;
    private readonly int _blockSize;
    private readonly int _shift;
    private readonly long _blockCount;
    private readonly int _capacityBlocks;
    private readonly int _maxReadaheadBlocks;
    private readonly int _maxRequestBlocks;
    private readonly SemaphoreSlim _requests;
    private readonly CancellationTokenSource _closing = new();
    private readonly Lock _lock = new();
    private readonly Dictionary<long, LinkedListNode<Block>> _cached = [];
    private readonly LinkedList<Block> _lru = new();
    private readonly Dictionary<long, Task<Fetched?>> _inFlight = [];
    // Read-ahead streams: a capture is often read forward at two places at once (a compressed format's descriptor
    // table and its data), so a few cursors are tracked, each with its own window (least recently used replaced).
    private readonly Cursor[] _cursors = [new(), new(), new(), new()];
    private long _clock;

    public BlockCacheSource(IRangeReader reader, RemoteReadOptions options)
    {
        options.Validate();
        _reader = reader;
        _blockSize = options.BlockSize;
        _shift = System.Numerics.BitOperations.Log2((uint)_blockSize);
        Length = reader.Length;
        _blockCount = (Length + _blockSize - 1) >> _shift;
        _capacityBlocks = (int)Math.Min(int.MaxValue, options.CacheBytes / _blockSize);
        _maxReadaheadBlocks = options.MaxReadaheadBytes / _blockSize;
        _maxRequestBlocks = Math.Max(1, options.MaxRequestBytes / _blockSize);
        _requests = new SemaphoreSlim(options.MaxConcurrentRequests);
        Stats = new RemoteReadStats(reader.DisplayName, Length);
    }

    /// <inheritdoc />
    public string Path => _reader.DisplayName;

    /// <inheritdoc />
    public long Length { get; }

    /// <summary>What reading cost so far.</summary>
    public RemoteReadStats Stats { get; }

    /// <inheritdoc />
    public int Read(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset >= Length || destination.IsEmpty)
        {
            return 0;
        }
        int count = (int)Math.Min(destination.Length, Length - offset);
        long first = offset >> _shift;
        long last = (offset + count - 1) >> _shift;
        var blocks = new byte[]?[last - first + 1];
        List<(long Start, Task<Fetched?> Task)>? waits = Plan(first, last, blocks);
        if (waits is not null)
        {
            try
            {
                Task.WaitAll(waits.Select(w => (Task)w.Task));
            }
            catch (AggregateException)
            {
                // Fetch tasks record their own failures and return null; nothing else is expected here.
            }
            foreach ((long start, Task<Fetched?> task) in waits)
            {
                Fetched? fetched = task.IsCompletedSuccessfully ? task.Result : null;
                if (fetched is null)
                {
                    continue;
                }
                for (long b = Math.Max(first, fetched.Start); b < Math.Min(last + 1, fetched.Start + fetched.Blocks.Length); b++)
                {
                    blocks[b - first] ??= fetched.Blocks[b - fetched.Start];
                }
            }
        }
        int done = 0;
        for (long b = first; b <= last && done < count; b++)
        {
            byte[]? data = blocks[b - first];
            if (data is null)
            {
                break;
            }
            long blockStart = b << _shift;
            int from = (int)Math.Max(0, offset + done - blockStart);
            int take = Math.Min(data.Length - from, count - done);
            if (take <= 0)
            {
                break;
            }
            data.AsSpan(from, take).CopyTo(destination[done..]);
            done += take;
            if (from + take < data.Length && done < count)
            {
                break; // a short last block of the object
            }
        }
        return done;
    }

    /// <summary>Fills cached blocks, starts fetches for the missing ones; returns the fetches to wait for.</summary>
    private List<(long Start, Task<Fetched?> Task)>? Plan(long first, long last, byte[]?[] blocks)
    {
        List<(long, Task<Fetched?>)>? waits = null;
        lock (_lock)
        {
            int hits = 0;
            long runStart = -1;
            var runs = new List<(long Start, int Count)>();
            for (long b = first; b <= last; b++)
            {
                if (_cached.TryGetValue(b, out LinkedListNode<Block>? node))
                {
                    _lru.Remove(node);
                    _lru.AddFirst(node);
                    blocks[b - first] = node.Value.Data;
                    hits++;
                }
                else if (_inFlight.TryGetValue(b, out Task<Fetched?>? pending))
                {
                    (waits ??= []).Add((b, pending));
                    hits++;
                }
                else
                {
                    if (runStart < 0 || b - runStart >= _maxRequestBlocks || runs.Count == 0 || runs[^1].Start + runs[^1].Count != b)
                    {
                        runs.Add((b, 0));
                        runStart = b;
                    }
                    runs[^1] = (runs[^1].Start, runs[^1].Count + 1);
                }
            }
            Stats.Hit(hits);
            Cursor cursor = CursorFor(first, last);
            if (runs.Count > 0)
            {
                // Read ahead only for a reader that is moving forward and missed: the window doubles per sequential miss.
                cursor.Window = cursor.Sequential ? Math.Min(_maxReadaheadBlocks, Math.Max(1, cursor.Window * 2)) : 0;
                (long start, int n) = runs[^1];
                if (cursor.Window > 0 && start + n == last + 1)
                {
                    int extra = 0;
                    while (extra < cursor.Window && n + extra < _maxRequestBlocks && last + 1 + extra < _blockCount
                           && !_cached.ContainsKey(last + 1 + extra) && !_inFlight.ContainsKey(last + 1 + extra))
                    {
                        extra++;
                    }
                    runs[^1] = (start, n + extra);
                }
                foreach ((long start2, int n2) in runs)
                {
                    Stats.Miss(n2);
                    Task<Fetched?> task = Task.Run(() => FetchAsync(start2, n2));
                    for (long b = start2; b < start2 + n2; b++)
                    {
                        _inFlight[b] = task;
                    }
                    (waits ??= []).Add((start2, task));
                }
            }
        }
        return waits;
    }

    /// <summary>The stream this read continues (its next block is inside [first, last + 1]), or the least recently used one, restarted.</summary>
    private Cursor CursorFor(long first, long last)
    {
        Cursor? match = null;
        Cursor oldest = _cursors[0];
        foreach (Cursor s in _cursors)
        {
            if (s.Next >= first && s.Next <= last + 1 && s.Next >= 0)
            {
                match = s;
                break;
            }
            if (s.Used < oldest.Used)
            {
                oldest = s;
            }
        }
        Cursor cursor = match ?? oldest;
        cursor.Sequential = match is not null;
        if (match is null)
        {
            cursor.Window = 0;
        }
        cursor.Next = last + 1;
        cursor.Used = ++_clock;
        return cursor;
    }

    private async Task<Fetched?> FetchAsync(long start, int count)
    {
        long offset = start << _shift;
        int length = (int)Math.Min((long)count << _shift, Length - offset);
        byte[] buffer = GC.AllocateUninitializedArray<byte>(length);
        Fetched? fetched = null;
        try
        {
            await _requests.WaitAsync(_closing.Token).ConfigureAwait(false);
            try
            {
                int got = await _reader.ReadAsync(offset, buffer, _closing.Token).ConfigureAwait(false);
                Stats.Fetched(got);
                if (got != length)
                {
                    throw new RemoteReadException(_reader.DisplayName, $"bytes={offset}-{offset + length - 1}", $"the store returned {got} of {length} bytes");
                }
            }
            finally
            {
                _requests.Release();
            }
            var blocks = new byte[count][];
            for (int i = 0; i < count; i++)
            {
                int from = i << _shift;
                blocks[i] = buffer.AsSpan(from, Math.Min(_blockSize, length - from)).ToArray();
            }
            fetched = new Fetched(start, blocks);
        }
        catch (Exception e)
        {
            // The boundary of a background fetch: whatever the transport threw after its retries becomes a counted
            // failure and a short read for every waiter, and the in-flight entries below are always cleared.
            Stats.Failed(e is RemoteReadException r ? $"{r.Operation}: {r.Problem}" : $"{e.GetType().Name}: {e.Message.ReplaceLineEndings(" ")}");
        }
        lock (_lock)
        {
            for (int i = 0; i < count; i++)
            {
                _inFlight.Remove(start + i);
                if (fetched is not null && !_cached.ContainsKey(start + i))
                {
                    _cached[start + i] = _lru.AddFirst(new Block(start + i, fetched.Blocks[i]));
                }
            }
            EvictNoLock();
        }
        return fetched;
    }

    private void EvictNoLock()
    {
        while (_cached.Count > _capacityBlocks && _lru.Last is { } oldest)
        {
            _lru.RemoveLast();
            _cached.Remove(oldest.Value.Index);
        }
    }

    /// <inheritdoc />
    public bool TryGetSpan(long offset, int length, out ReadOnlySpan<byte> span)
    {
        span = default;
        return false;
    }

    /// <inheritdoc />
    public void ReleaseResident(long offset, long length)
    {
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _closing.Cancel();
        _reader.Dispose();
        _requests.Dispose();
        _closing.Dispose();
    }

    private sealed record Block(long Index, byte[] Data);

    private sealed class Cursor
    {
        public long Next = -1;
        public long Used;
        public int Window;
        public bool Sequential;
    }

    private sealed record Fetched(long Start, byte[][] Blocks);
}
