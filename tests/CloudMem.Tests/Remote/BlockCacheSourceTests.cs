using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Remote;

namespace CloudMem.Tests.Remote;

/// <summary>
/// The block cache in front of a remote object, over an in-memory transport that records every ranged request:
/// content, coalescing, concurrency, read-ahead, the size bound, failures as short reads.
/// </summary>
public sealed class BlockCacheSourceTests
{
    private const int Block = 4096;

    private static readonly RemoteReadOptions s_small = new() { BlockSize = Block, CacheBytes = 64 * Block, MaxReadaheadBytes = 8 * Block, MaxRequestBytes = 16 * Block, MaxConcurrentRequests = 4 };

    [Fact]
    public void Every_read_returns_the_objects_bytes_wherever_it_starts_and_ends()
    {
        byte[] data = Data(37 * Block + 123);
        using var source = new BlockCacheSource(new MemoryObject(data), s_small);
        var random = new Random(7);
        for (int i = 0; i < 500; i++)
        {
            long offset = random.NextInt64(data.Length + 100);
            var buffer = new byte[random.Next(1, 9 * Block)];
            int read = source.Read(offset, buffer);
            int expected = (int)Math.Clamp(data.Length - offset, 0, buffer.Length);
            Assert.Equal(expected, read);
            Assert.True(buffer.AsSpan(0, read).SequenceEqual(data.AsSpan((int)Math.Min(offset, data.Length), read)), $"read at 0x{offset:X}");
        }
    }

    [Fact]
    public void Adjacent_missing_blocks_are_one_request_and_a_second_read_is_a_hit()
    {
        var remote = new MemoryObject(Data(100 * Block));
        using var source = new BlockCacheSource(remote, s_small);

        source.Read(5 * Block + 10, new byte[10 * Block]);
        Assert.Equal([(5L * Block, 11 * Block)], remote.Requests);

        source.Read(6 * Block, new byte[Block]);
        Assert.Single(remote.Requests);
        Assert.Equal((1L, 12L, 11L), (source.Stats.Requests, source.Stats.CacheHits + source.Stats.CacheMisses, source.Stats.CacheMisses));
        Assert.Equal(11L * Block, source.Stats.BytesFetched);
    }

    [Fact]
    public void A_long_read_is_split_into_bounded_requests_fetched_concurrently()
    {
        var remote = new MemoryObject(Data(100 * Block)) { Delay = TimeSpan.FromMilliseconds(100) };
        using var source = new BlockCacheSource(remote, s_small);

        source.Read(0, new byte[64 * Block]);

        Assert.Equal(4, remote.Requests.Count);
        Assert.All(remote.Requests, r => Assert.Equal(16 * Block, r.Length));
        Assert.True(remote.MaxConcurrent > 1, $"requests ran one at a time (max {remote.MaxConcurrent} in flight)");
    }

    [Fact]
    public void A_forward_reader_gets_a_growing_read_ahead_window_and_a_random_one_none()
    {
        var remote = new MemoryObject(Data(200 * Block));
        using var source = new BlockCacheSource(remote, s_small);
        for (long b = 0; b < 40; b++)
        {
            source.Read(b * Block, new byte[Block]);
        }
        Assert.True(remote.Requests.Count <= 8, $"{remote.Requests.Count} requests for 40 sequential blocks");

        var random = new MemoryObject(Data(200 * Block));
        using var scattered = new BlockCacheSource(random, s_small);
        foreach (long b in new long[] { 150, 20, 90, 60, 180, 5 })
        {
            scattered.Read(b * Block, new byte[100]);
        }
        Assert.All(random.Requests, r => Assert.Equal(Block, r.Length));
    }

    [Fact]
    public void The_cache_never_holds_more_than_its_budget()
    {
        var remote = new MemoryObject(Data(300 * Block));
        using var source = new BlockCacheSource(remote, s_small with { MaxReadaheadBytes = 0 });
        source.Read(0, new byte[1]);
        for (long b = 1; b < 200; b++)
        {
            source.Read(b * 7 % 300 * Block, new byte[1]);
        }
        int before = remote.Requests.Count;
        source.Read(0, new byte[1]); // block 0 was used first and 199 blocks since: evicted (64-block budget)
        Assert.Equal(before + 1, remote.Requests.Count);
        source.Read(0, new byte[1]);
        Assert.Equal(before + 1, remote.Requests.Count);
    }

    [Fact]
    public void A_failed_fetch_is_a_short_read_counted_in_the_stats_and_retried_next_time()
    {
        var remote = new MemoryObject(Data(50 * Block)) { FailFrom = 10L * Block };
        using var source = new BlockCacheSource(remote, s_small with { MaxReadaheadBytes = 0 });

        var buffer = new byte[4 * Block];
        Assert.Equal(4 * Block, source.Read(6 * Block, buffer));
        Assert.Equal(0, source.Read(10 * Block, buffer));
        Assert.Equal(1, source.Stats.Failures);
        Assert.Contains("injected failure", source.Stats.LastFailure);

        remote.FailFrom = long.MaxValue;
        Assert.Equal(4 * Block, source.Read(10 * Block, buffer));
        Assert.True(buffer.AsSpan().SequenceEqual(remote.Data.AsSpan(10 * Block, 4 * Block)));
    }

    [Fact]
    public void Concurrent_readers_see_the_right_bytes_and_share_fetches()
    {
        var remote = new MemoryObject(Data(128 * Block)) { Delay = TimeSpan.FromMilliseconds(5) };
        using var source = new BlockCacheSource(remote, s_small with { CacheBytes = 256L * Block });
        Parallel.For(0, 8, new ParallelOptions { MaxDegreeOfParallelism = 8 }, worker =>
        {
            var random = new Random(worker);
            var buffer = new byte[3 * Block];
            for (int i = 0; i < 200; i++)
            {
                long offset = random.NextInt64(120 * Block);
                Assert.Equal(buffer.Length, source.Read(offset, buffer));
                Assert.True(buffer.AsSpan().SequenceEqual(remote.Data.AsSpan((int)offset, buffer.Length)));
            }
        });
        Assert.True(source.Stats.BytesFetched <= 160L * Block, $"fetched {source.Stats.BytesFetched} bytes of a {128 * Block}-byte object with room for all of it");
    }

    [Theory]
    [InlineData("lime")]
    [InlineData("avml")]
    public void A_remote_capture_opens_through_the_same_parsers_and_reads_what_the_local_file_reads(string format)
    {
        using var dir = new Support.TempDir();
        (ulong, int)[] ranges = [(0x1000, 3 * Block), (0x100000, 5 * Block)];
        byte[] capture = format == "lime" ? Support.CaptureBuilder.Lime(ranges) : Support.CaptureBuilder.Avml(ranges);
        string path = dir.Write("small." + format, capture);
        using RunMappedMemory local = CaptureOpener.Open(path);
        using RunMappedMemory remote = CaptureOpener.Open(new MemoryObject(capture), s_small);

        Assert.Equal(local.Runs, remote.Runs);
        Assert.Equal(local.Metadata.Format, remote.Metadata.Format);
        var a = new byte[0x101000 + 5 * Block];
        var b = new byte[a.Length];
        Assert.Equal(local.Read(0, a), remote.Read(0, b));
        Assert.True(a.AsSpan().SequenceEqual(b));
        Assert.Equal(0, remote.DecodeFailures);
        Assert.NotNull(remote.RemoteStats);
        Assert.Null(local.RemoteStats);
    }

    [Fact]
    public void A_remote_object_that_is_not_a_capture_fails_with_its_name_and_the_structure()
    {
        byte[] text = "this is a text file, not memory\n"u8.ToArray();
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(new MemoryObject(text) { Name = "s3://bucket/notes.txt" }, s_small));
        Assert.StartsWith("s3://bucket/notes.txt: ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    internal static byte[] Data(int length, int seed = 1)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    /// <summary>An object in memory that records each ranged request; optionally slow, or failing from an offset on.</summary>
    internal sealed class MemoryObject(byte[] data) : IRangeReader
    {
        private readonly Lock _lock = new();
        private readonly List<(long Offset, int Length)> _requests = [];
        private int _inFlight;
        private int _maxConcurrent;

        public byte[] Data => data;
        public string Name { get; init; } = "mem://object";
        public TimeSpan Delay { get; init; }
        public long FailFrom { get; set; } = long.MaxValue;
        public string DisplayName => Name;
        public long Length => data.Length;
        public int MaxConcurrent => Volatile.Read(ref _maxConcurrent);

        public List<(long Offset, int Length)> Requests
        {
            get
            {
                lock (_lock)
                {
                    return [.. _requests.OrderBy(r => r.Offset)];
                }
            }
        }

        public async ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
        {
            int now = Interlocked.Increment(ref _inFlight);
            int seen;
            while ((seen = Volatile.Read(ref _maxConcurrent)) < now && Interlocked.CompareExchange(ref _maxConcurrent, now, seen) != seen)
            {
            }
            try
            {
                if (Delay > TimeSpan.Zero)
                {
                    await Task.Delay(Delay, cancellationToken);
                }
                if (offset + destination.Length > FailFrom)
                {
                    throw new RemoteReadException(Name, $"bytes={offset}-{offset + destination.Length - 1}", "injected failure");
                }
                lock (_lock)
                {
                    _requests.Add((offset, destination.Length));
                }
                int n = (int)Math.Min(destination.Length, data.Length - offset);
                data.AsMemory((int)offset, n).CopyTo(destination);
                return n;
            }
            finally
            {
                Interlocked.Decrement(ref _inFlight);
            }
        }

        public void Dispose()
        {
        }
    }
}
