using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using static CloudMem.Tests.Support.CheckpointBuilder;

namespace CloudMem.Tests.Parsers;

/// <summary>VMware .vmss/.vmsn containers and .vmem companions built in the test, where every byte is known.</summary>
public sealed class VmwareTests : IDisposable
{
    private const ulong High = 0x1_0000_0000;             // 4 GiB: where RAM above a PCI hole is relocated
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>Two regions around a hole: 4 pages at 0, 3 pages at 4 GiB, stored back to back.</summary>
    private static readonly (uint Ppn, uint PageNum, uint Pages)[] s_split = [(0, 0, 4), ((uint)(High >> 12), 4, 3)];

    /// <summary>The memory store for <see cref="s_split"/>: each region's pattern at its physical address.</summary>
    private static byte[] SplitStore() => [.. CaptureBuilder.Pattern(0, 0x4000), .. CaptureBuilder.Pattern(High, 0x3000)];

    private static void AssertPattern(IPhysicalMemory memory, ulong start, int length)
    {
        byte[] actual = new byte[length];
        Assert.Equal(length, memory.Read(start, actual));
        Assert.True(CaptureBuilder.Pattern(start, length).AsSpan().SequenceEqual(actual), $"bytes at 0x{start:X} differ");
    }

    private static void AssertSplit(IPhysicalMemory memory, long storeBase)
    {
        Assert.Equal([new PhysicalRun(0, 0x4000, storeBase), new PhysicalRun(High, 0x3000, storeBase + 0x4000)], memory.Runs);
        AssertPattern(memory, 0, 0x4000);
        AssertPattern(memory, High, 0x3000);
        byte[] page = new byte[0x2000];
        Assert.Equal(0, memory.Read(0x4000, page));            // the hole
        Assert.Equal(0x1000, memory.Read(High + 0x2000, page)); // runs off the end
    }

    private byte[] Inline(uint magic, int padding = 0x123)
    {
        int width = (magic & 0xF) == 0 ? 4 : 8;
        return Build(magic,
            ("Checkpoint", [Tag("memSize", 1)]),
            ("memory", [.. Regions(s_split), Tag("align_mask", 0xFFFF), Block("Memory", [0, 0], SplitStore(), padding, width)]));
    }

    [Theory]
    [InlineData(0xBED2BED2u, "normal")]
    [InlineData(0xBED3BED3u, "partial")]
    [InlineData(0xBAD1BAD1u, "restored")]
    [InlineData(0xBAD2BAD2u, "no-restore")]
    [InlineData(0xBED0BED0u, "old (32-bit sizes)")]
    [InlineData(0xBED2BED0u, "version 0 (32-bit sizes)")]
    public void Every_magic_opens_with_inline_memory_and_its_size_width(uint magic, string name)
    {
        byte[] file = Inline(magic);
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("m.vmss", file));
        Assert.Equal("VMware checkpoint", memory.Metadata.Format);
        Assert.Equal($"0x{magic:X8} ({name})", memory.Metadata.Get("magic"));
        Assert.Equal((magic & 0xF) == 0 ? "4 bytes" : "8 bytes", memory.Metadata.Get("block size fields"));
        long data = file.Length - 2 - 0x7000;                 // the block's data ends right before the zero tag
        AssertSplit(memory, data);
        Assert.Equal("2", memory.Metadata.Get("regions"));
        Assert.Equal("0xFFFF", memory.Metadata.Get("align_mask"));
        Assert.Equal("Checkpoint (1), memory (9)", memory.Metadata.Get("group tags"));
        Assert.StartsWith("inline (Memory block data at ", memory.Metadata.Get("memory"), StringComparison.Ordinal);
    }

    [Fact]
    public void A_similar_but_unknown_magic_is_not_vmware()
    {
        byte[] file = Inline(0xBED1BED1);
        Array.Resize(ref file, 0x10000);
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("m.vmss", file));
        Assert.StartsWith("raw", memory.Metadata.Format, StringComparison.Ordinal);
    }

    [Fact]
    public void Block_padding_is_skipped_and_tags_after_a_block_are_read()
    {
        // The padding is made of bytes that would be a valid tag, so a reader that ignores padLen goes wrong.
        byte[] cpuBlock = [.. U64(0x80050033), .. U64(0), .. U64(0x7FF00000), .. U64(0x1234000), .. U64(0x3606F0)];
        byte[] file = Build(Normal,
            ("cpu", [Tag("cpu:numVCPUs", 2), Tag("rip", [0], U64(0xFFFFFFFF81000000)), Tag("CR64", [0, 3], U64(0xABC000)),
                     Block("CR64", [1], cpuBlock, 7), Tag("rsp", [1], U64(0xFFFFC90000001000)), Tag("MSR", [1, 2, 3], U64(5)),
                     Tag("rax", [7], U64(1))]),
            ("memory", [Tag("regionsCount", 0), Block("Memory", [0, 0], CaptureBuilder.Pattern(0, 0x2000), 0xFFF)]));
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("cpu.vmsn", file));
        Assert.Equal("none: memory is linear from physical 0", memory.Metadata.Get("regions"));
        AssertPattern(memory, 0, 0x2000);
        Assert.Equal(0x2000UL, memory.MaxAddress);
        Assert.Equal("2", memory.Metadata.Get("vcpus"));
        Assert.Equal(2, memory.Metadata.Cpus.Count);
        CpuState cpu0 = memory.Metadata.Cpus[0];
        Assert.True(cpu0.TryGet("cr3", out ulong cr3) && cr3 == 0xABC000);
        Assert.True(cpu0.TryGet("rip", out ulong rip) && rip == 0xFFFFFFFF81000000);
        CpuState cpu1 = memory.Metadata.Cpus[1];
        Assert.True(cpu1.TryGet("cr3", out cr3) && cr3 == 0x1234000);
        Assert.True(cpu1.TryGet("cr0", out ulong cr0) && cr0 == 0x80050033);
        Assert.True(cpu1.TryGet("rsp", out ulong rsp) && rsp == 0xFFFFC90000001000);
    }

    [Fact]
    public void A_group_without_a_zero_tag_ends_at_its_size()
    {
        byte[] file = Build(Normal, terminate: false, ("memory", [.. Regions(s_split), Block("Memory", [0, 0], SplitStore(), 0)]));
        using RunMappedMemory memory = CaptureOpener.Open(_dir.Write("noend.vmss", file));
        AssertSplit(memory, file.Length - 0x7000);
    }

    [Fact]
    public void Compressed_memory_is_refused_clearly()
    {
        byte[] file = Build(Normal, ("memory", [Tag("regionsCount", 0), Block("Memory", [0, 0], new byte[0x1000], 0, compressed: true)]));
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write("c.vmss", file)).Dispose());
        Assert.Contains("compressed", e.Message, StringComparison.Ordinal);
        Assert.Equal("group 'memory' Memory[0][0]", e.Error.Structure);
    }

    private string StateWithVmem(string stateName, bool writeVmem = true)
    {
        byte[] state = Build(Normal, ("Checkpoint", [Tag("memSize", 1)]), ("memory", Regions(s_split)));
        string path = _dir.Write(stateName, state);
        if (writeVmem)
        {
            _dir.Write(Path.ChangeExtension(stateName, ".vmem"), SplitStore());
        }
        return path;
    }

    private static int OpenDescriptors(string directory)
    {
        // Linux: how many of this process's descriptors point into the directory (a mapping keeps its file open).
        int count = 0;
        foreach (string fd in Directory.GetFiles("/proc/self/fd"))
        {
            try
            {
                if (new FileInfo(fd).LinkTarget is { } target && target.StartsWith(directory, StringComparison.Ordinal))
                {
                    count++;
                }
            }
            catch (IOException)
            {
            }
        }
        return count;
    }

    [Theory]
    [InlineData("snap.vmsn")]
    [InlineData("susp.vmss")]
    public void State_without_memory_uses_the_vmem_beside_it_and_closes_both(string name)
    {
        string path = StateWithVmem(name);
        using (RunMappedMemory memory = CaptureOpener.Open(path))
        {
            AssertSplit(memory, 0);
            Assert.Equal($"{Path.ChangeExtension(name, ".vmem")} (companion, 0x7000 bytes)", memory.Metadata.Get("memory"));
            if (OperatingSystem.IsLinux())
            {
                Assert.Equal(2, OpenDescriptors(_dir.Path));
            }
        }
        if (OperatingSystem.IsLinux())
        {
            Assert.Equal(0, OpenDescriptors(_dir.Path));
        }
    }

    [Fact]
    public void Missing_vmem_is_a_one_line_error_naming_it()
    {
        string path = StateWithVmem("gone.vmsn", writeVmem: false);
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path).Dispose());
        string expected = Path.Combine(_dir.Path, "gone.vmem");
        Assert.Equal($"{path}: VMware memory at 0x{12 + 2 * 80 + 13 + 2:X}: this state file holds no memory (no Memory block) and its companion {expected} does not exist", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Theory]
    [InlineData("a.vmss")]
    [InlineData("a.vmsn")]
    public void A_vmem_with_a_sibling_state_file_takes_its_region_map(string stateName)
    {
        StateWithVmem(stateName);
        string vmem = _dir.File("a.vmem");
        using (RunMappedMemory memory = CaptureOpener.Open(vmem))
        {
            AssertSplit(memory, 0);
            Assert.Equal(stateName, memory.Metadata.Get("state file"));
            Assert.StartsWith("VMware checkpoint: a.vmem", memory.Description, StringComparison.Ordinal);
            if (OperatingSystem.IsLinux())
            {
                Assert.Equal(1, OpenDescriptors(_dir.Path));      // the state file was closed after parsing
            }
        }
        if (OperatingSystem.IsLinux())
        {
            Assert.Equal(0, OpenDescriptors(_dir.Path));
        }
    }

    [Fact]
    public void A_vmem_prefers_the_vmss_and_falls_back_to_raw_without_a_vmware_sibling()
    {
        StateWithVmem("b.vmss");
        _dir.Write("b.vmsn", Build(Normal, ("memory", Regions((0, 0, 7)))));
        using (RunMappedMemory memory = CaptureOpener.Open(_dir.File("b.vmem")))
        {
            Assert.Equal("b.vmss", memory.Metadata.Get("state file"));
        }
        _dir.Write("c.vmem", SplitStore());
        _dir.Write("c.vmss", new byte[100]);                    // not a VMware file: ignored
        using (RunMappedMemory raw = CaptureOpener.Open(_dir.File("c.vmem")))
        {
            Assert.StartsWith("raw", raw.Metadata.Format, StringComparison.Ordinal);
            Assert.Equal([new PhysicalRun(0, 0x7000, 0)], raw.Runs);
        }
    }

    [Fact]
    public void A_raw_image_sharing_a_base_name_with_a_state_file_stays_raw()
    {
        StateWithVmem("memory.vmss");                           // memory.vmss + memory.vmem, regions with a hole
        string raw = _dir.Write("memory.raw", new byte[0x8000]);
        using RunMappedMemory memory = CaptureOpener.Open(raw);
        Assert.StartsWith("raw", memory.Metadata.Format, StringComparison.Ordinal);
        Assert.Equal([new PhysicalRun(0, 0x8000, 0)], memory.Runs);
    }

    [Fact]
    public void A_broken_sibling_state_file_is_named_in_the_error()
    {
        byte[] state = Build(Normal, ("memory", Regions(s_split)));
        state[12 + 64] = 0xFF;                                  // group position far past the end
        _dir.Write("d.vmss", state);
        string vmem = _dir.Write("d.vmem", SplitStore());
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(vmem).Dispose());
        Assert.Equal("VMware (d.vmss)", e.Error.Format);
        Assert.Equal("groups[0].position", e.Error.Structure);
        Assert.Equal(12 + 64, e.Error.FileOffset);
        Assert.StartsWith($"{vmem}: VMware (d.vmss) groups[0].position at 0x4C: ", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_short_vmem_is_clipped_with_a_warning()
    {
        StateWithVmem("e.vmss");
        File.WriteAllBytes(_dir.File("e.vmem"), SplitStore()[..0x5000]);
        using RunMappedMemory memory = CaptureOpener.Open(_dir.File("e.vmss"));
        Assert.Equal([new PhysicalRun(0, 0x4000, 0), new PhysicalRun(High, 0x1000, 0x4000)], memory.Runs);
        Assert.Contains(memory.Metadata.Warnings, w => w.Contains("0x2000 bytes of the regions are missing", StringComparison.Ordinal));
    }

    // ---- hostile input ----

    [Theory]
    [InlineData(0xBED2BED2u)]
    [InlineData(0xBED0BED0u)]
    public void Every_prefix_of_header_and_tags_is_a_one_line_error(uint magic)
    {
        byte[] file = Inline(magic, padding: 5);
        string path = _dir.File("prefix.vmss");
        int dataStart = file.Length - 2 - 0x7000;
        for (int length = 0; length < dataStart; length++)
        {
            File.WriteAllBytes(path, file[..length]);
            if (length == 0)
            {
                continue;                                       // an empty file is refused before any parser runs
            }
            var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path).Dispose());
            Assert.DoesNotContain('\n', e.Message);
            Assert.StartsWith(path + ": ", e.Message, StringComparison.Ordinal);
            if (length >= 4)
            {
                Assert.Equal("VMware", e.Error.Format);
                Assert.True(e.Error.FileOffset >= 0 && e.Error.FileOffset <= length, $"prefix {length}: offset 0x{e.Error.FileOffset:X}");
            }
        }
    }

    [Fact]
    public void Every_prefix_of_a_state_file_with_a_vmem_is_a_one_line_error()
    {
        string path = StateWithVmem("p.vmsn");
        byte[] file = File.ReadAllBytes(path);
        for (int length = 1; length < file.Length; length++)
        {
            File.WriteAllBytes(path, file[..length]);
            var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path).Dispose());
            Assert.DoesNotContain('\n', e.Message);
            // Opening the .vmem instead: a cut state file no longer has a complete header, or its tags are cut.
            if (length >= 4)
            {
                var fromVmem = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.File("p.vmem")).Dispose());
                Assert.Equal("VMware (p.vmsn)", fromVmem.Error.Format);
            }
        }
        File.WriteAllBytes(path, file);
        using RunMappedMemory whole = CaptureOpener.Open(path);
        AssertSplit(whole, 0);
    }

    private DumpFormatException Corrupt(byte[] file, ParserLimits? limits = null)
        => Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write($"bad{Guid.NewGuid():N}.vmss", file), limits).Dispose());

    [Fact]
    public void Group_position_and_size_outside_the_file_are_errors()
    {
        byte[] file = Inline(Normal);
        byte[] position = (byte[])file.Clone();
        BitConverter.TryWriteBytes(position.AsSpan(12 + 80 + 64), (long)file.Length + 1);
        DumpFormatException e = Corrupt(position);
        Assert.Equal(("groups[1].position", 12 + 80 + 64L), (e.Error.Structure, e.Error.FileOffset));

        byte[] inTable = (byte[])file.Clone();
        BitConverter.TryWriteBytes(inTable.AsSpan(12 + 64), 4L);   // inside the header
        Assert.Equal("groups[0].position", Corrupt(inTable).Error.Structure);

        byte[] size = (byte[])file.Clone();
        BitConverter.TryWriteBytes(size.AsSpan(12 + 80 + 72), long.MaxValue);
        e = Corrupt(size);
        Assert.Equal(("groups[1].size", 12 + 80 + 72L), (e.Error.Structure, e.Error.FileOffset));

        byte[] count = (byte[])file.Clone();
        BitConverter.TryWriteBytes(count.AsSpan(8), 1000u);
        Assert.Equal("header.numGroups", Corrupt(count).Error.Structure);
    }

    [Fact]
    public void Tag_sizes_past_the_group_are_errors()
    {
        // A block whose diskSize runs past the group's end.
        byte[] file = Build(Normal, ("memory", [Tag("regionsCount", 0), Block("Memory", [0, 0], new byte[0x1000], 0)]));
        int block = 12 + 80 + Tag("regionsCount", 0).Length;
        int diskSize = block + 2 + "Memory".Length + 8;
        BitConverter.TryWriteBytes(file.AsSpan(diskSize), 0x2000UL);
        DumpFormatException e = Corrupt(file);
        Assert.Equal(("group 'memory' tag[1].diskSize", (long)diskSize), (e.Error.Structure, e.Error.FileOffset));

        // Padding past the group's end.
        file = Build(Normal, ("memory", [Tag("regionsCount", 0), Block("Memory", [0, 0], new byte[0x1000], 0)]));
        BitConverter.TryWriteBytes(file.AsSpan(diskSize + 16), (ushort)0xFFFF);
        Assert.Equal("group 'memory' tag[1].diskSize", Corrupt(file).Error.Structure);

        // A name longer than what is left of the group (the group is cut right after the tag word).
        file = Build(Normal, terminate: false, ("memory", [[0x04, 0xFF]]));
        e = Corrupt(file);
        Assert.Equal(("group 'memory' tag[0].name", 12 + 80 + 2L), (e.Error.Structure, e.Error.FileOffset));
    }

    [Fact]
    public void Regions_are_checked()
    {
        byte[] missing = Build(Normal, ("memory", [Tag("regionsCount", 2), Tag("regionPPN", 0, 0), Tag("regionPageNum", 0, 0), Tag("regionSize", 1, 0),
            Block("Memory", [0, 0], new byte[0x2000], 0)]));
        DumpFormatException e = Corrupt(missing);
        Assert.Equal("group 'memory' regionPPN[1]", e.Error.Structure);
        Assert.Contains("missing (regionsCount is 2)", e.Message, StringComparison.Ordinal);

        byte[] overlap = Build(Normal, ("memory", [.. Regions((0, 0, 2), (1, 2, 1)), Block("Memory", [0, 0], new byte[0x3000], 0)]));
        Assert.Contains("overlaps", Corrupt(overlap).Message, StringComparison.Ordinal);

        byte[] wide = Build(Normal, ("memory", [Tag("regionsCount", [], new byte[9]), Block("Memory", [0, 0], new byte[0x1000], 0)]));
        Assert.Contains("not an integer", Corrupt(wide).Message, StringComparison.Ordinal);

        byte[] empty = Build(Normal, ("memory", Regions((0, 8, 1))));
        _dir.Write("empty.vmem", new byte[0x1000]);             // region 0 starts past the end of the .vmem
        e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(_dir.Write("empty.vmss", empty)).Dispose());
        Assert.Contains("holds no pages", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Region_count_is_limited()
    {
        byte[] file = Build(Normal, ("memory", [.. Regions((0, 0, 1), (2, 1, 1), (4, 2, 1)), Block("Memory", [0, 0], new byte[0x3000], 0)]));
        string path = _dir.Write("regions.vmss", file);
        var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path, new ParserLimits { MaxMemoryRegions = 2 }).Dispose());
        Assert.Contains("MaxMemoryRegions", e.Message, StringComparison.Ordinal);
        Assert.Equal(12 + 80L, e.Error.FileOffset);
        using RunMappedMemory ok = CaptureOpener.Open(path, new ParserLimits { MaxMemoryRegions = 3 });
        Assert.Equal(3, ok.Runs.Count);
        // A huge count is refused before anything is allocated for it.
        byte[] huge = Build(Normal, ("memory", [Tag("regionsCount", uint.MaxValue), Block("Memory", [0, 0], new byte[0x1000], 0)]));
        Assert.Contains("MaxMemoryRegions", Corrupt(huge).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Group_and_tag_counts_are_limited()
    {
        byte[] file = Inline(Normal);
        string path = _dir.Write("limits.vmss", file);
        Assert.Contains("MaxCheckpointGroups", Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path, new ParserLimits { MaxCheckpointGroups = 1 }).Dispose()).Message, StringComparison.Ordinal);
        Assert.Contains("MaxCheckpointTags", Assert.Throws<DumpFormatException>(() => CaptureOpener.Open(path, new ParserLimits { MaxCheckpointTags = 9 }).Dispose()).Message, StringComparison.Ordinal);
        using RunMappedMemory ok = CaptureOpener.Open(path, new ParserLimits { MaxCheckpointGroups = 2, MaxCheckpointTags = 10 });
        Assert.Equal(2, ok.Runs.Count);
        byte[] cpus = Build(Normal, ("cpu", [Tag("cpu:numVCPUs", 100)]), ("memory", [Tag("regionsCount", 0), Block("Memory", [0, 0], new byte[0x1000], 0)]));
        Assert.Contains("MaxCpus", Corrupt(cpus, new ParserLimits { MaxCpus = 64 }).Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Random_corruption_never_crashes()
    {
        byte[] file = Inline(Normal, padding: 9);
        int limit = file.Length - 0x7000;
        var random = new Random(2026);
        string path = _dir.File("mutant.vmss");
        byte[] page = new byte[0x1000];
        for (int i = 0; i < 400; i++)
        {
            byte[] mutant = (byte[])file.Clone();
            for (int flips = random.Next(1, 5); flips > 0; flips--)
            {
                mutant[random.Next(limit)] = random.Next(3) switch { 0 => 0xFF, 1 => 0, _ => (byte)random.Next(256) };
            }
            File.WriteAllBytes(path, mutant);
            if (!CaptureOpener.TryOpen(path, out RunMappedMemory? memory, out FormatError? error))
            {
                Assert.False(string.IsNullOrEmpty(error!.Problem));
                continue;
            }
            using (memory)
            {
                foreach (PhysicalRun run in memory!.Runs.Take(4))
                {
                    memory.Read(run.PhysicalAddress, page);
                    memory.Read(run.End - 100, page);
                }
            }
        }
    }
}
