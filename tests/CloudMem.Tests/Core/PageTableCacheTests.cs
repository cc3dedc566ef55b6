using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Core;

/// <summary>
/// The page-table cache shared by every address space over one capture, and the walker's leaf-table hint, on the real
/// Linux fixture (raw, and compressed formats that read through their decoders): translations and reads are the same
/// as walks that read every entry from the capture, hits are counted, and the bound holds.
/// </summary>
public sealed class PageTableCacheTests
{
    [SkippableTheory]
    [InlineData("memory.raw")]
    [InlineData("memory.kdump-zlib.flat")]
    [InlineData("memory.elf")]
    public void Translations_and_reads_are_identical_with_and_without_the_cache(string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file));
        LinuxContext context = LinuxContext.Open(memory);
        var small = new PageTableCache(memory, 64 * PageTableCache.PageBytes);   // tiny: evictions all the time
        int compared = 0;
        foreach ((ulong dtb, List<ulong> addresses) in Spaces(context))
        {
            var plain = new AddressSpace(memory, dtb, context.Kernel.Kernel.Mode, PageTableCache.Disabled(memory));
            var shared = new AddressSpace(memory, dtb, context.Kernel.Kernel.Mode);
            var bounded = new AddressSpace(memory, dtb, context.Kernel.Kernel.Mode, small);
            foreach (ulong va in addresses)
            {
                bool expected = plain.TryTranslate(va, out Translation t, out TranslationFault f);
                foreach (AddressSpace cached in new[] { shared, bounded })
                {
                    bool ok = cached.TryTranslate(va, out Translation ct, out TranslationFault cf);
                    Assert.True(expected == ok && t == ct && f == cf, $"dtb 0x{dtb:X} va 0x{va:X}: {ok} {ct} {cf}, without the cache {expected} {t} {f}");
                }
                compared++;
            }
            // Multi-page reads (coalesced physically contiguous pages) give the same bytes and stop at the same place.
            foreach (ulong va in addresses.Where((_, i) => i % 97 == 0))
            {
                byte[] want = new byte[5 * 4096 + 123];
                byte[] got = new byte[want.Length];
                int wantCount = plain.Read(va - 77, want);
                Assert.Equal(wantCount, shared.Read(va - 77, got));
                Assert.True(want.AsSpan(0, wantCount).SequenceEqual(got.AsSpan(0, wantCount)), $"dtb 0x{dtb:X}: bytes at 0x{va - 77:X} differ");
            }
        }
        Assert.True(compared > 10_000, $"only {compared} addresses compared");
        Assert.True(small.Count <= small.Capacity && small.Capacity == 64, $"{small.Count} of {small.Capacity}");
        Assert.True(small.Misses > 64, "the tiny cache never evicted");
        Assert.Equal(0, PageTableCache.Disabled(memory).Capacity);
    }

    [SkippableFact]
    public void Process_walks_share_the_kernel_tables_and_a_range_reads_its_leaf_table_once()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.kdump-zlib.flat"));
        LinuxContext context = LinuxContext.Open(memory);
        PagingMode mode = context.Kernel.Kernel.Mode;
        var cache = new PageTableCache(memory);
        ulong kernelVa = context.Kernel.Symbols.TryGetAddress("linux_banner", out ulong banner) ? banner : throw new InvalidOperationException("no linux_banner");
        var kernel = new AddressSpace(memory, context.Kernel.Kernel.DirectoryTableBase, mode, cache);
        Assert.True(kernel.TryTranslate(kernelVa, out Translation expected, out _));
        long levels = mode.Levels.Count;
        Assert.True(cache.Misses <= levels && cache.Misses >= 2, $"first walk read {cache.Misses} table pages");
        Assert.Equal(0, cache.Hits);
        long walkPages = cache.Misses;

        // Another process's walk to the same kernel address reads only its own root table: the rest is shared.
        ulong userDtb = Spaces(context).Select(s => s.Dtb).First(d => d != context.Kernel.Kernel.DirectoryTableBase);
        var process = new AddressSpace(memory, userDtb, mode, cache);
        Assert.True(process.TryTranslate(kernelVa, out Translation viaProcess, out _));
        Assert.Equal(expected, viaProcess);
        Assert.Equal(walkPages + 1, cache.Misses);
        Assert.Equal(walkPages - 1, cache.Hits);

        // A 4 KiB-mapped user range: 64 pages translate with one leaf-table read, the other 63 start at the kept leaf.
        (ulong dtb, ulong start) = UserRange(context, 64);
        var user = new AddressSpace(memory, dtb, mode, cache);
        long missesBefore = cache.Misses;
        long hitsBefore = cache.Hits;
        Assert.True(user.TryTranslate(start, out _, out _));
        long firstWalkMisses = cache.Misses - missesBefore;
        for (ulong page = 1; page < 64; page++)
        {
            Assert.True(user.TryTranslate(start + page * 4096, out Translation t, out _));
            Assert.Equal(4096UL, t.PageSize);
        }
        Assert.Equal(firstWalkMisses, cache.Misses - missesBefore);
        Assert.True(cache.Hits - hitsBefore >= 63, $"{cache.Hits - hitsBefore} hits for 64 pages");
        Assert.NotSame(cache, PageTableCache.SharedFor(memory));
        Assert.Same(PageTableCache.SharedFor(memory), new AddressSpace(memory, userDtb, mode).Tables);
    }

    [Fact]
    public void Upper_level_bits_faults_and_a_partly_captured_table_are_kept_by_the_leaf_hint()
    {
        // PML4 0x1000 -> PDPT 0x2000 (read-only) -> PD 0x3000: [0] PT 0x4000 with NX, [1] PT 0x5000 supervisor,
        // [2] PT 0xF000, a table page only half in the file (0xF800 bytes).
        const ulong p = 1, rw = 2, us = 4, nx = 1UL << 63;
        byte[] image = new byte[0xF800];
        void Entry(ulong at, ulong value) => BitConverter.TryWriteBytes(image.AsSpan((int)at, 8), value);
        Entry(0x1000, 0x2000 | p | rw | us);
        Entry(0x2000, 0x3000 | p | us);
        Entry(0x3000, 0x4000 | p | rw | us | nx);
        Entry(0x3008, 0x5000 | p | rw);
        Entry(0x3010, 0xF000 | p | rw | us);
        for (ulong i = 0; i < 16; i++)
        {
            Entry(0x4000 + i * 8, (0x8000 + i * 0x1000) | p | rw | us);
        }
        Entry(0x5000, 0x6000 | p | rw | us);
        Entry(0x5008, 0x1234_5000);   // not present, not zero: swapped out
        Entry(0xF000, 0x8000 | p | rw | us);
        using var dir = new TempDir();
        using RunMappedMemory memory = CaptureOpener.Open(dir.Write("tables.raw", image));
        var cache = new PageTableCache(memory);
        var cached = new AddressSpace(memory, 0x1000, tables: cache);
        var plain = new AddressSpace(memory, 0x1000, tables: PageTableCache.Disabled(memory));
        ulong[] order = [0x1000, 0x20_0000, 0x2000, 0x0, 0x20_1000, 0x20_2000, 0x40_0000, 0x40_0000 + 300 * 0x1000, 0xF000, 0x10000];
        foreach (ulong va in order)
        {
            bool expected = plain.TryTranslate(va, out Translation t, out TranslationFault f);
            bool ok = cached.TryTranslate(va, out Translation c, out TranslationFault cf);
            Assert.True(expected == ok && t == c && f == cf, $"0x{va:X}: {ok} {c} {cf}, without the cache {expected} {t} {f}");
        }
        Assert.True(cached.TryTranslate(0x2000, out Translation low, out _));
        Assert.Equal(new Translation(0xA000, 4096, Writable: false, User: true, Executable: false), low);
        Assert.True(cached.TryTranslate(0x20_0000, out Translation supervisor, out _));
        Assert.Equal(new Translation(0x6000, 4096, Writable: false, User: false, Executable: true), supervisor);
        Assert.False(cached.TryTranslate(0x20_1000, out _, out TranslationFault swapped));
        Assert.Equal(TranslationFault.SwappedOut, swapped);
        Assert.False(cached.TryTranslate(0x40_0000 + 300 * 0x1000, out _, out TranslationFault cut));
        Assert.Equal(TranslationFault.TableNotCaptured, cut);
        Assert.True(cache.Uncached >= 2, "the half-captured table was cached");
        Assert.Equal(5, cache.Misses);   // PML4, PDPT, PD and the two whole PTs, each read once
    }

    /// <summary>The kernel space and every user process's space, each with addresses to translate.</summary>
    private static List<(ulong Dtb, List<ulong> Addresses)> Spaces(LinuxContext context)
    {
        var spaces = new List<(ulong, List<ulong>)>();
        var kernelAddresses = new List<ulong>();
        var random = new Random(16);
        for (int i = 0; i < 4000; i++)
        {
            // The kernel half (direct map, vmalloc, vmemmap, text) and non-canonical and user addresses for faults.
            kernelAddresses.Add(0xFFFF_8000_0000_0000UL + ((ulong)random.NextInt64() & 0x7FFF_FFFF_F000UL));
            kernelAddresses.Add((ulong)random.NextInt64() & ~0xFFFUL);
        }
        if (context.Kernel.Symbols.TryGetAddress("linux_banner", out ulong banner))
        {
            for (ulong page = 0; page < 1024; page++)
            {
                kernelAddresses.Add((banner & ~0xFFFUL) - 512 * 4096 + page * 4096);
            }
        }
        spaces.Add((context.Kernel.Kernel.DirectoryTableBase, kernelAddresses));
        (List<LinuxMapping> maps, _) = LinuxMaps.List(context);
        foreach (IGrouping<int, LinuxMapping> process in maps.GroupBy(m => m.Pid))
        {
            AddressSpace? space = LinuxMalfind.UserSpace(context, LinuxProcesses.List(context).Processes, process.Key);
            if (space is null)
            {
                continue;
            }
            var addresses = new List<ulong>();
            foreach (LinuxMapping map in process)
            {
                for (ulong va = map.Start; va < map.End && addresses.Count < 3000; va += 4096)
                {
                    addresses.Add(va);
                }
                addresses.Add(map.End);   // often unmapped: faults must match too
            }
            spaces.Add((space.DirectoryTableBase, addresses));
        }
        return spaces;
    }

    /// <summary>A user process's DTB and the start of <paramref name="pages"/> consecutive present 4 KiB pages in one leaf table.</summary>
    private static (ulong Dtb, ulong Start) UserRange(LinuxContext context, int pages)
    {
        foreach ((ulong dtb, List<ulong> addresses) in Spaces(context).Skip(1))
        {
            var probe = new AddressSpace(context.Physical, dtb, context.Kernel.Kernel.Mode, PageTableCache.Disabled(context.Physical));
            foreach (ulong start in addresses.Where(a => (a & 0x1F_FFFF) <= 0x20_0000 - (ulong)pages * 4096))
            {
                bool all = true;
                for (ulong page = 0; page < (ulong)pages && all; page++)
                {
                    all = probe.TryTranslate(start + page * 4096, out Translation t, out _) && t.PageSize == 4096;
                }
                if (all)
                {
                    return (dtb, start);
                }
            }
        }
        throw new InvalidOperationException($"no process maps {pages} consecutive 4 KiB pages");
    }
}
