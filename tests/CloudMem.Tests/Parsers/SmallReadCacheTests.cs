using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Parsers;

/// <summary>
/// Reads of a mapped capture go through pread (small ones through a bounded cache of whole file pages) rather than the
/// mapping: the bytes must be the file's, across page boundaries and in a partial last page; and the page cache holds
/// what it was given, keeps the newer two pages of a set, and never more than its budget.
/// </summary>
public sealed class SmallReadCacheTests
{
    [Fact]
    public void Small_and_large_reads_return_the_file_bytes_anywhere_including_a_partial_last_page()
    {
        byte[] image = new byte[64 * 4096 + 1000];   // raw: one direct run; the last page is partial
        new Random(7).NextBytes(image);
        using var dir = new TempDir();
        using RunMappedMemory memory = CaptureOpener.Open(dir.Write("random.raw", image));
        var random = new Random(11);
        for (int i = 0; i < 5000; i++)
        {
            int length = i % 10 == 0 ? random.Next(4096, 3 * 4096) : random.Next(1, 200);
            int at = i % 7 == 0 ? (random.Next(1, 64) * 4096) - random.Next(1, length + 1) : random.Next(0, image.Length);
            at = Math.Clamp(at, 0, image.Length - 1);
            byte[] got = new byte[length];
            int count = memory.Read((ulong)at, got);
            Assert.Equal(Math.Min(length, image.Length - at), count);
            Assert.True(image.AsSpan(at, count).SequenceEqual(got.AsSpan(0, count)), $"{length} bytes at 0x{at:X} differ");
        }
        Assert.Equal(0, memory.Read((ulong)image.Length, new byte[8]));
    }

    [Fact]
    public void The_page_cache_is_bounded_and_keeps_the_newer_two_pages_of_a_set()
    {
        var cache = new PageCache(16 * PageCache.PageBytes);
        Assert.Equal(16, cache.Capacity);
        for (ulong page = 0; page < 1000; page++)
        {
            byte[] bytes = new byte[PageCache.PageBytes];
            bytes[0] = (byte)page;
            cache.Add(page * 4096, bytes);
            Assert.Same(bytes, cache.TryGet(page * 4096));
            Assert.True(cache.Count <= cache.Capacity);
        }
        Assert.Equal(16, cache.Count);
        int held = Enumerable.Range(0, 1000).Count(p => cache.TryGet((ulong)p * 4096) is byte[] b && b[0] == (byte)p);
        Assert.Equal(16, held);
        Assert.Null(new PageCache(4096).TryGet(0));
        Assert.Equal(0, new PageCache(0).Capacity);
        Assert.Throws<ArgumentOutOfRangeException>(() => cache.Add(0, new byte[100]));
    }
}
