using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Convert;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.Formats.HyperV;

namespace CloudMem.Tests.Parsers;

/// <summary>
/// Hyper-V storage container (.vmrs/.vmcx): the two real samples (dissect.hypervisor's test files, kept in the workspace's
/// shared/samples and never committed here; expected values from the samples' README, i.e. from dissect's own tests),
/// synthetic containers written by <see cref="HyperVContainerWriter"/>, RAM round trips through the vmrs writer,
/// compressed RamBlocks, and hostile input.
/// </summary>
public sealed partial class HyperVTests
{
    // ---- real samples ----

    private static string Sample(string name)
    {
        // RepoRoot/../shared in the main checkout; RepoRoot/../../shared from a worktree under /work/wt.
        string[] candidates =
        [
            Path.Combine(Fixture.RepoRoot, "..", "shared", "samples", "hyperv", name),
            Path.Combine(Fixture.RepoRoot, "..", "..", "shared", "samples", "hyperv", name),
        ];
        string? found = Array.Find(candidates, File.Exists);
        Skip.If(found is null, $"shared sample hyperv/{name} not present (development-only data, not in this repository)");
        return found!;
    }

    private static Dictionary<string, MetadataKey> Tree(RunMappedMemory memory)
        => memory.Metadata.KeyTree.ToDictionary(k => k.Path);

    private static List<string> ChildrenOf(RunMappedMemory memory, string path)
        => memory.Metadata.KeyTree.Select(k => k.Path)
            .Where(p => p.StartsWith(path + "/", StringComparison.Ordinal) && !p[(path.Length + 1)..].Contains('/'))
            .ToList();

    [SkippableFact]
    public void Vmrs_sample_matches_every_expected_value()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Sample("test.VMRS"));
        CaptureMetadata m = memory.Metadata;
        Assert.Equal("0x400 (4.0)", m.Get("format version"));
        Assert.Equal("1", m.Get("replay logs"));
        Assert.Equal("1", m.Get("object tables"));
        Assert.Equal("2", m.Get("key tables"));
        Assert.StartsWith("0 (sequence 7", m.Get("header copy")); // dissect: header is headers[0]
        Assert.Empty(memory.Runs);
        Assert.Contains("no guest memory in this file", m.Get("guest memory"));
        // The only warning: the replay log region reaches past the end of this (cut) sample; every checksum verifies.
        Assert.Single(m.Warnings);
        Assert.Contains("replay log region", m.Warnings[0]);

        Dictionary<string, MetadataKey> tree = Tree(memory);
        Assert.Equal(["/configuration"], ChildrenOf(memory, ""));
        Assert.Equal(("int", "2304"), (tree["/configuration/properties/version"].Type, tree["/configuration/properties/version"].Value));
        // devicetype and metric are arrays (repeated names); dissect's dict keeps the last element, which is what the
        // README lists.
        Assert.Equal(3, ChildrenOf(memory, "/configuration/global_settings/metrics").Count);
        const string Device = "/configuration/global_settings/metrics/devicetype[2]";
        Assert.Equal("83F8638B-8DCA-4152-9EDA-2CA8B33039B4", tree[Device + "/guid"].Value);
        Assert.Equal("83F8638B-8DCA-4152-9EDA-2CA8B33039B4", tree[Device + "/deviceinstance/guid"].Value);
        string metric = Device + "/deviceinstance/metric[5]";
        Assert.False(tree.ContainsKey(Device + "/deviceinstance/metric[6]"));
        Assert.Equal(("string", "4E1D459F-7861-46A4-887C-B64397C97E1B;0\\0\\L"), (tree[metric + "/typecode"].Type, tree[metric + "/typecode"].Value));
        Assert.Equal(("int", "0"), (tree[metric + "/value"].Type, tree[metric + "/value"].Value));
        Assert.Equal(("bool", "false"), (tree[metric + "/enabled"].Type, tree[metric + "/enabled"].Value));
        Assert.Equal("0", tree[metric + "/starttime"].Value);
        Assert.Equal("0", tree[metric + "/lastcomputedtime"].Value);
        Assert.Equal("0", tree[metric + "/peaktime"].Value);
        Assert.Equal(("string", ""), (tree[metric + "/poolid"].Type, tree[metric + "/poolid"].Value));
        Assert.Equal("70BB60D2-A9D3-46AA-B654-3DE53004B4F8", tree[metric + "/resourcetypeid"].Value);
        Assert.Equal(8, ChildrenOf(memory, metric).Count);
        Assert.Equal("2048", tree["/configuration/_ac6b8dc1-3257-4a70-b1b2-a9c9215659ad_/VDEVVersion"].Value);
        Assert.Equal("512", tree["/configuration/_e51b7ef6-4a7f-4780-aaae-d4b291aacd2e_/VDEVVersion"].Value);
        Assert.Equal("1792", tree["/configuration/_83f8638b-8dca-4152-9eda-2ca8b33039b4_/VDEVVersion"].Value);
        Assert.Equal(5, ChildrenOf(memory, "/configuration").Count);
        Assert.Equal(113, m.KeyTree.Count);
    }

    [SkippableFact]
    public void Vmcx_sample_matches_every_expected_value()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Sample("test.vmcx"));
        CaptureMetadata m = memory.Metadata;
        Assert.Equal("0x400 (4.0)", m.Get("format version"));
        Assert.Equal("1", m.Get("replay logs"));
        Assert.Equal("1", m.Get("object tables"));
        Assert.Equal("8", m.Get("key tables"));
        Assert.StartsWith("0 (sequence 25", m.Get("header copy"));
        Assert.Empty(memory.Runs);
        Assert.Empty(m.Warnings); // every header, table and key checksum verifies
        Assert.Contains("no guest memory in this file", m.Get("guest memory"));
        Assert.Equal(["/configuration"], ChildrenOf(memory, ""));
        Assert.Equal(27, ChildrenOf(memory, "/configuration").Count);
        Assert.Equal(39, ChildrenOf(memory, "/configuration/manifest").Count);
        Assert.Equal(11, ChildrenOf(memory, "/configuration/properties").Count);
        Assert.Equal(6, ChildrenOf(memory, "/configuration/settings").Count);
    }

    [SkippableFact]
    public void Sample_info_prints_the_key_tree_and_says_there_is_no_guest_memory()
    {
        string path = Sample("test.VMRS");
        using RunMappedMemory memory = CaptureOpener.Open(path);
        var info = Engine.Capture.CaptureInfo.Build(path, memory, scanBanner: false);
        var text = new StringWriter();
        Engine.Output.ReportWriter.Write(info, Engine.Output.OutputFormat.Table, text);
        Assert.Contains("Key tree", text.ToString());
        Assert.Contains("/configuration/properties/version", text.ToString());
        Assert.Contains("no guest memory in this file", text.ToString());
        string json = Engine.Output.ReportWriter.ToJson(info);
        Assert.Contains("\"keyTree\"", json);
        Assert.Equal(113, info.KeyTree!.Count);
    }

    // ---- synthetic containers ----

    private static byte[] Build(Action<HyperVContainerWriter> add)
    {
        var writer = new HyperVContainerWriter();
        add(writer);
        var stream = new MemoryStream();
        long length = writer.Write((offset, data) =>
        {
            stream.Position = offset;
            stream.Write(data);
        });
        stream.SetLength(length);
        return stream.ToArray();
    }

    private static RunMappedMemory Open(TempDir dir, byte[] file, ParserLimits? limits = null, string name = "c.vmrs")
        => CaptureOpener.OpenAs(dir.Write(name, file), "hyperv", limits);

    private static DumpFormatException Rejects(TempDir dir, byte[] file, ParserLimits? limits = null)
    {
        var e = Assert.Throws<DumpFormatException>(() => Open(dir, file, limits).Dispose());
        Assert.DoesNotContain('\n', e.Message);
        Assert.Contains("Hyper-V storage", e.Message);
        return e;
    }

    private static byte[] Sample3()
        => Build(w =>
        {
            w.AddInt("/configuration/properties/version", 0xA00);
            w.AddUInt("/configuration/properties/big", ulong.MaxValue);
            w.AddBool("/configuration/settings/on", true);
            w.AddString("/configuration/settings/name", "dév ω");
            w.AddString("/configuration/settings/empty", "");
            w.AddArray("/configuration/settings/small", [1, 2, 3]);
            w.AddArray("/configuration/settings/large", Enumerable.Range(0, 5000).Select(i => (byte)i).ToArray());
            w.AddInt("/configuration/list/item", 1);
            w.AddInt("/configuration/list/item", 2);
        });

    [SkippableFact]
    public void Synthetic_container_round_trips_every_value_type()
    {
        using var dir = new TempDir();
        using RunMappedMemory memory = CaptureOpener.Open(dir.Write("c.vmcx", Sample3()));
        Assert.StartsWith("Hyper-V storage container", memory.Metadata.Format);
        Assert.Empty(memory.Metadata.Warnings);
        Assert.Empty(memory.Runs);
        Dictionary<string, MetadataKey> tree = Tree(memory);
        Assert.Equal(("int", "2560"), (tree["/configuration/properties/version"].Type, tree["/configuration/properties/version"].Value));
        Assert.Equal(("uint", "18446744073709551615"), (tree["/configuration/properties/big"].Type, tree["/configuration/properties/big"].Value));
        Assert.Equal(("bool", "true"), (tree["/configuration/settings/on"].Type, tree["/configuration/settings/on"].Value));
        Assert.Equal(("string", "dév ω"), (tree["/configuration/settings/name"].Type, tree["/configuration/settings/name"].Value));
        Assert.Equal("", tree["/configuration/settings/empty"].Value);
        Assert.Equal(("binary", "010203"), (tree["/configuration/settings/small"].Type, tree["/configuration/settings/small"].Value));
        Assert.Equal("binary (file object)", tree["/configuration/settings/large"].Type);
        Assert.Contains("5000 bytes in file object", tree["/configuration/settings/large"].Value);
        Assert.Equal("1", tree["/configuration/list/item[0]"].Value);
        Assert.Equal("2", tree["/configuration/list/item[1]"].Value);
        Assert.Equal("node", tree["/configuration/settings"].Type);
        Assert.Equal("1", memory.Metadata.Get("file objects"));
    }

    [SkippableFact]
    public void Chained_object_tables_and_many_key_tables_are_followed()
    {
        // 300 file objects need two 227-entry object tables; 300 keys need several key tables.
        byte[] file = Build(w =>
        {
            for (int i = 0; i < 300; i++)
            {
                byte[] data = new byte[2048];
                data[0] = (byte)i;
                w.AddArray($"/objects/o{i}", data);
            }
        });
        using var dir = new TempDir();
        using RunMappedMemory memory = Open(dir, file);
        Assert.Equal("2", memory.Metadata.Get("object tables"));
        Assert.Equal("300", memory.Metadata.Get("file objects"));
        Assert.True(int.Parse(memory.Metadata.Get("key tables")!) >= 2);
        Assert.Equal(301, memory.Metadata.KeyTree.Count);
        Assert.Empty(memory.Metadata.Warnings);
    }

    // ---- RAM: writer round trips ----

    private static void AssertSameBytes(IPhysicalMemory expected, IPhysicalMemory actual)
    {
        byte[] a = new byte[1 << 20];
        byte[] b = new byte[1 << 20];
        foreach (PhysicalRun run in expected.Runs)
        {
            for (ulong pa = run.PhysicalAddress; pa < run.End; pa += (ulong)a.Length)
            {
                int n = (int)Math.Min((ulong)a.Length, run.End - pa);
                Assert.Equal(n, expected.Read(pa, a.AsSpan(0, n)));
                Assert.Equal(n, actual.Read(pa, b.AsSpan(0, n)));
                Assert.True(a.AsSpan(0, n).SequenceEqual(b.AsSpan(0, n)), $"bytes differ in 0x{pa:X}+0x{n:X}");
            }
        }
    }

    [SkippableFact]
    public void Multi_run_capture_round_trips_through_vmrs()
    {
        using var dir = new TempDir();
        // Runs: low pages, one crossing a 1 MiB block boundary, an unaligned tail, and one far above 4 GiB.
        string lime = dir.Write("m.lime", CaptureBuilder.Lime((0x1000, 0x3000), (0x1F0000, 0x180000), (0x5000_0010, 100), (0x1_0000_0000, 0x2000)));
        using RunMappedMemory source = CaptureOpener.Open(lime);
        ConvertResult result = CaptureConverter.Convert(lime, source, "vmrs", dir.File("m.vmrs"));
        using RunMappedMemory vmrs = CaptureOpener.Open(dir.File("m.vmrs"));
        Assert.StartsWith("Hyper-V storage container", vmrs.Metadata.Format);
        Assert.Empty(vmrs.Metadata.Warnings);
        Assert.Contains("4 RamMemoryBlock descriptors", vmrs.Metadata.Get("guest memory"));
        AssertSameBytes(source, vmrs);
        // Pages widened from the unaligned run read as zero around the captured bytes.
        byte[] page = new byte[4096];
        Assert.Equal(4096, vmrs.Read(0x5000_0000, page));
        Assert.True(page.AsSpan(0, 0x10).IndexOfAnyExcept((byte)0) < 0);
        Assert.Equal(0x1_0000_2000UL, vmrs.MaxAddress);
        Assert.Equal(0, vmrs.Read(0x4000, page)); // holes stay holes
        Assert.NotNull(result);
    }

    [SkippableFact]
    public void Real_memory_round_trips_through_vmrs()
    {
        string raw = Fixture.Require("memory.raw");
        using var dir = new TempDir();
        using RunMappedMemory source = CaptureOpener.Open(raw);
        CaptureConverter.Convert(raw, source, "vmrs", dir.File("memory.vmrs"));
        using RunMappedMemory vmrs = CaptureOpener.Open(dir.File("memory.vmrs"));
        Assert.Empty(vmrs.Metadata.Warnings);
        Assert.Equal(source.TotalBytes(), vmrs.TotalBytes());
        AssertSameBytes(source, vmrs);
    }

    [SkippableFact]
    public void Cpu_registers_from_a_qemu_elf_survive_the_vmrs_round_trip()
    {
        string elf = Fixture.Require("memory.elf");
        using var dir = new TempDir();
        using RunMappedMemory source = CaptureOpener.Open(elf);
        Skip.If(source.Metadata.Cpus.All(c => !c.TryGet("cr3", out _)), "the ELF fixture carries no CR3");
        CaptureConverter.Convert(elf, source, "vmrs", dir.File("memory.vmrs"));
        using RunMappedMemory vmrs = CaptureOpener.Open(dir.File("memory.vmrs"));
        List<CpuState> expected = source.Metadata.Cpus.Where(c => c.TryGet("cr3", out _)).ToList();
        Assert.Equal(expected.Count, vmrs.Metadata.Cpus.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            foreach (string name in new[] { "cr3", "rip", "rsp", "cr0", "cr4" })
            {
                Assert.True(expected[i].TryGet(name, out ulong want));
                Assert.True(vmrs.Metadata.Cpus[i].TryGet(name, out ulong got));
                Assert.Equal(want, got);
            }
            Assert.StartsWith("Hyper-V partition_state", vmrs.Metadata.Cpus[i].Source);
        }
    }

    [SkippableFact]
    public void Partition_state_chunks_give_cpu_registers_and_damage_is_a_warning()
    {
        var regs = new List<KeyValuePair<string, ulong>> { new("rip", 0xFFFFFFFF81000000), new("rsp", 0x1234), new("cr3", 0x1AD000), new("cr0", 0x80050033) };
        byte[] blob = VmrsWriter.PartitionState([new CpuState(0, "test", regs), new CpuState(1, "test", [.. regs.Select(r => r.Key == "cr3" ? new KeyValuePair<string, ulong>("cr3", 0x2000) : r)])]);
        var metadata = new CaptureMetadata("t");
        HyperVPartitionState.Read(blob, metadata, ParserLimits.Default);
        Assert.Empty(metadata.Warnings);
        Assert.Equal(2, metadata.Cpus.Count);
        Assert.True(metadata.Cpus[0].TryGet("cr3", out ulong cr3) && cr3 == 0x1AD000);
        Assert.True(metadata.Cpus[1].TryGet("cr3", out cr3) && cr3 == 0x2000);
        Assert.True(metadata.Cpus[0].TryGet("rip", out ulong rip) && rip == 0xFFFFFFFF81000000);
        Assert.Equal("Hyper-V partition_state (VP 1)", metadata.Cpus[1].Source);
        Assert.Empty(VmrsWriter.PartitionState([]));

        for (int cut = 0; cut < blob.Length; cut += 7)
        {
            var damaged = new CaptureMetadata("t");
            HyperVPartitionState.Read(blob.AsSpan(0, cut), damaged, new ParserLimits { MaxCpus = 1 });
            Assert.True(damaged.Cpus.Count <= 1);
        }
        byte[] badLength = (byte[])blob.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(badLength.AsSpan(HyperVPartitionState.DescriptorSize + HyperVPartitionState.ChunkHeaderSize + 4), 0x7FFFFFF0);
        var warned = new CaptureMetadata("t");
        HyperVPartitionState.Read(badLength, warned, ParserLimits.Default);
        Assert.Contains(warned.Warnings, w => w.Contains("blob ends first"));
        byte[] badHeader = (byte[])blob.Clone();
        BinaryPrimitives.WriteUInt64LittleEndian(badHeader.AsSpan(8), ulong.MaxValue);
        HyperVPartitionState.Read(badHeader, warned, ParserLimits.Default);
        Assert.Contains(warned.Warnings, w => w.Contains("no CPU state read"));
    }

    // ---- RAM: descriptors, partial and compressed blocks ----

    private static byte[] Descriptor(ulong pages, ulong mbpStart, ulong gpaPage)
    {
        byte[] d = new byte[HyperVLayout.RamMemoryBlockSize];
        BinaryPrimitives.WriteUInt32LittleEndian(d, 3);
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(HyperVLayout.MemoryBlockPageCountOffset), pages);
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(HyperVLayout.MemoryBlockMbpStartOffset), mbpStart);
        BinaryPrimitives.WriteUInt64LittleEndian(d.AsSpan(HyperVLayout.MemoryBlockGpaStartOffset), gpaPage);
        return d;
    }

    [SkippableFact]
    public void Descriptors_map_block_pages_to_guest_pages_and_a_short_raw_last_block_is_accepted()
    {
        // Block 0 holds pages for two descriptors (GPA 0x100000.. and GPA 0x80000000..); block 1 is a 3-page raw block
        // as Microsoft's writer leaves a range's last block.
        byte[] block0 = CaptureBuilder.Pattern(0xAA000000, HyperVLayout.RamBlockSize);
        byte[] block1 = CaptureBuilder.Pattern(0xBB000000, 3 * 4096);
        byte[] file = Build(w =>
        {
            w.AddArray("/savedstate/RamMemoryBlock0", Descriptor(200, 0, 0x100));
            w.AddArray("/savedstate/RamMemoryBlock1", Descriptor(59, 200, 0x80000));
            w.AddArray("/savedstate/RamBlock0", block0);
            w.AddArray("/savedstate/RamBlock1", block1);
        });
        using var dir = new TempDir();
        using RunMappedMemory memory = Open(dir, file);
        Assert.Empty(memory.Metadata.Warnings);
        Assert.Equal(2, memory.Runs.Count);
        Assert.Equal(new PhysicalRun(0x100000, 200 * 4096UL, memory.Runs[0].FileOffset), memory.Runs[0]);
        Assert.Equal((0x80000000UL, 59 * 4096UL), (memory.Runs[1].PhysicalAddress, memory.Runs[1].Length));
        byte[] buffer = new byte[59 * 4096];
        Assert.Equal(buffer.Length, memory.Read(0x80000000, buffer));
        Assert.True(buffer.AsSpan(0, 56 * 4096).SequenceEqual(block0.AsSpan(200 * 4096)));
        Assert.True(buffer.AsSpan(56 * 4096).SequenceEqual(block1));
    }

    /// <summary>A page as plain-LZ77 Xpress with every byte a literal (a flag word of zeros per 32 bytes).</summary>
    private static byte[] XpressLiterals(ReadOnlySpan<byte> page)
    {
        var output = new MemoryStream();
        for (int i = 0; i < page.Length; i += 32)
        {
            output.Write(new byte[4]);
            output.Write(page.Slice(i, 32));
        }
        return output.ToArray();
    }

    [SkippableFact]
    public void Compressed_block_token_stream_decodes()
    {
        byte[] expected = new byte[HyperVLayout.RamBlockSize];
        var tokens = new MemoryStream();
        void U32(uint v) => tokens.Write(BitConverter.GetBytes(v));
        int page = 0;
        void Fill(int pages, ulong pattern)
        {
            for (int i = 0; i < pages * 4096; i += 8)
            {
                BinaryPrimitives.WriteUInt64LittleEndian(expected.AsSpan((page * 4096) + i), pattern);
            }
            page += pages;
        }
        // page 0: one pattern page; pages 1-3: a pattern run
        U32(HyperVLayout.TokenFillPage); tokens.Write(BitConverter.GetBytes(0x1122334455667788UL)); Fill(1, 0x1122334455667788UL);
        U32(HyperVLayout.TokenFillRun); tokens.Write(BitConverter.GetBytes(0xCAFEUL)); U32(3); Fill(3, 0xCAFE);
        // page 4: raw page token; page 5: Xpress page token
        byte[] p4 = CaptureBuilder.Pattern(0x4000, 4096);
        U32(4096); tokens.Write(p4); p4.CopyTo(expected, 4 * 4096); page++;
        byte[] p5 = CaptureBuilder.Pattern(0x5000, 4096);
        byte[] x5 = XpressLiterals(p5);
        U32((uint)x5.Length); tokens.Write(x5); p5.CopyTo(expected, 5 * 4096); page++;
        // pages 6-7: explicit raw (2 pages); page 8: explicit Xpress
        byte[] p67 = CaptureBuilder.Pattern(0x6000, 8192);
        U32(HyperVLayout.TokenExplicit); U32(8192); U32(8192); tokens.Write(p67); p67.CopyTo(expected, 6 * 4096); page += 2;
        byte[] p8 = CaptureBuilder.Pattern(0x8000, 4096);
        byte[] x8 = XpressLiterals(p8);
        U32(HyperVLayout.TokenExplicit); U32(4096); U32((uint)x8.Length); tokens.Write(x8); p8.CopyTo(expected, 8 * 4096); page++;
        // the rest: one zero run, then end
        U32(HyperVLayout.TokenFillRun); tokens.Write(new byte[8]); U32((uint)(256 - page)); page = 256;
        U32(HyperVLayout.TokenEnd);
        byte[] stream = tokens.ToArray();

        byte[] decoded = new byte[HyperVLayout.RamBlockSize];
        Assert.Equal(decoded.Length, HyperVRam.DecodeBlock(stream, decoded, out string? problem));
        Assert.Null(problem);
        Assert.True(decoded.AsSpan().SequenceEqual(expected));

        byte[] file = Build(w =>
        {
            w.AddArray("/savedstate/RamMemoryBlock0", Descriptor(256, 0, 0x200));
            w.AddArray("/savedstate/RamBlock0", stream);
        });
        using var dir = new TempDir();
        using RunMappedMemory memory = Open(dir, file);
        Assert.Contains("0 raw, 1 compressed", memory.Metadata.Get("guest memory"));
        Assert.Equal(RunStorage.Decoded, memory.Runs[0].Storage);
        byte[] read = new byte[HyperVLayout.RamBlockSize];
        Assert.Equal(read.Length, memory.Read(0x200000, read));
        Assert.True(read.AsSpan().SequenceEqual(expected));
        byte[] small = new byte[16];
        Assert.Equal(16, memory.Read(0x200000 + (5 * 4096) + 100, small));
        Assert.True(small.AsSpan().SequenceEqual(p5.AsSpan(100, 16)));
    }
}
