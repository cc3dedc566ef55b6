using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Convert;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.Formats.HyperV;

namespace CloudMem.Tests.Parsers;

public sealed partial class HyperVTests
{
    [SkippableFact]
    public void Corrupt_compressed_block_reads_short_and_is_counted()
    {
        byte[] stream = new byte[64];
        BinaryPrimitives.WriteUInt32LittleEndian(stream, 5000); // a page of 5000 stored bytes that are not there
        byte[] file = Build(w =>
        {
            w.AddArray("/savedstate/RamMemoryBlock0", Descriptor(256, 0, 0));
            w.AddArray("/savedstate/RamBlock0", stream);
        });
        using var dir = new TempDir();
        using RunMappedMemory memory = Open(dir, file);
        byte[] page = new byte[4096];
        Assert.Equal(0, memory.Read(0, page));
        Assert.Equal(1, memory.DecodeFailures);
        Assert.Contains("page token", memory.LastDecodeProblem);
    }

    [SkippableFact]
    public void Missing_ram_blocks_and_overlapping_descriptors()
    {
        using var dir = new TempDir();
        byte[] missing = Build(w => w.AddArray("/savedstate/RamMemoryBlock0", Descriptor(1UL << 40, 0, 0)));
        using (RunMappedMemory memory = Open(dir, missing, name: "missing.vmrs"))
        {
            Assert.Empty(memory.Runs); // a huge declared range with no data costs nothing and reads as a hole
            Assert.Contains(memory.Metadata.Warnings, w => w.Contains("no usable RamBlock data"));
        }
        byte[] overlap = Build(w =>
        {
            w.AddArray("/savedstate/RamMemoryBlock0", Descriptor(10, 0, 0));
            w.AddArray("/savedstate/RamMemoryBlock1", Descriptor(10, 10, 5));
            w.AddArray("/savedstate/RamBlock0", new byte[HyperVLayout.RamBlockSize]);
        });
        Assert.Contains("overlaps", Rejects(dir, overlap).Message);
        byte[] overflow = Build(w => w.AddArray("/savedstate/RamMemoryBlock0", Descriptor(ulong.MaxValue / 2, 0, 0)));
        Assert.Contains("overflow", Rejects(dir, overflow).Message);
        byte[] wrongType = Build(w => w.AddInt("/savedstate/RamMemoryBlock0", 1));
        Assert.Contains("RAM descriptor", Rejects(dir, wrongType).Message);
    }

    // ---- hostile input ----

    private static void ResealHeader(byte[] file, int copy)
    {
        Span<byte> h = file.AsSpan(copy * 0x1000, HyperVLayout.HeaderSize);
        BinaryPrimitives.WriteUInt32LittleEndian(h[HyperVLayout.HeaderChecksumOffset..], Crc32.ComputeWithZeroField(h, HyperVLayout.HeaderChecksumOffset));
    }

    private static void ResealObjectEntry(byte[] file, int entryOffset)
    {
        Span<byte> e = file.AsSpan(entryOffset, HyperVLayout.ObjectEntrySize);
        BinaryPrimitives.WriteUInt32LittleEndian(e[HyperVLayout.ObjectChecksumOffset..], Crc32.ComputeWithZeroField(e, HyperVLayout.ObjectChecksumOffset));
    }

    /// <summary>Key entries of the key table at <paramref name="tableOffset"/>: (file offset, name).</summary>
    private static List<(int Offset, string Name)> Entries(byte[] file, int tableOffset)
    {
        var entries = new List<(int, string)>();
        int pos = tableOffset + HyperVLayout.KeyTableHeaderSize;
        while (pos + HyperVLayout.KeyHeaderSize < tableOffset + 0x1000)
        {
            int size = BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(pos + HyperVLayout.KeySizeOffset));
            if (file[pos] != (byte)HyperVKeyType.Free)
            {
                int nameSize = file[pos + HyperVLayout.KeyNameSizeOffset];
                entries.Add((pos, Encoding.UTF8.GetString(file, pos + HyperVLayout.KeyHeaderSize, nameSize - 1)));
            }
            pos += size;
        }
        return entries;
    }

    // Layout of a small container from HyperVContainerWriter: headers, root object table at 0x2000, replay log at
    // 0x3000, first key table at 0x4000.
    private const int FirstKeyTable = 0x4000;
    private const int RootEntries = 0x2000 + HyperVLayout.ObjectTableHeaderSize;

    [SkippableFact]
    public void Every_prefix_of_the_headers_and_tables_is_rejected_with_one_line()
    {
        byte[] file = Sample3();
        using var dir = new TempDir();
        string path = dir.File("prefix.vmrs");
        var lengths = new List<int>();
        for (int n = 1; n < 0x2200; n++)
        {
            if (n < 0x60 || (n >= 0x1000 && n < 0x1060) || n >= 0x1FF0)
            {
                lengths.Add(n);
            }
        }
        for (int n = 0x2200; n < FirstKeyTable + 0x1000; n += 61)
        {
            lengths.Add(n);
        }
        foreach (int n in lengths)
        {
            File.WriteAllBytes(path, file[..n]);
            var e = Assert.Throws<DumpFormatException>(() => CaptureOpener.OpenAs(path, "hyperv").Dispose());
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    [SkippableFact]
    public void Only_one_valid_header_copy_is_enough_and_the_newer_valid_copy_wins()
    {
        using var dir = new TempDir();
        byte[] file = Sample3();
        file[0x100 - 0x100 + HyperVLayout.HeaderVersionOffset] ^= 0xFF; // copy 0: checksum no longer matches
        using (RunMappedMemory memory = Open(dir, file, name: "one.vmrs"))
        {
            Assert.StartsWith("1 (sequence 1", memory.Metadata.Get("header copy"));
            Assert.Contains(memory.Metadata.Warnings, w => w.Contains("header copy 0 is unusable"));
        }
        file = Sample3();
        BinaryPrimitives.WriteUInt16LittleEndian(file.AsSpan(0x1000 + HyperVLayout.HeaderSequenceOffset), 9);
        ResealHeader(file, 1);
        using (RunMappedMemory memory = Open(dir, file, name: "newer.vmrs"))
        {
            Assert.StartsWith("1 (sequence 9", memory.Metadata.Get("header copy"));
        }
        file = Sample3();
        file[HyperVLayout.HeaderChecksumOffset] ^= 1;
        file[0x1000 + HyperVLayout.HeaderChecksumOffset] ^= 1;
        Assert.Contains("no valid header copy", Rejects(dir, file).Message);
    }

    [SkippableFact]
    public void Detection_by_content_finds_copy_1_when_copy_0_is_wiped_but_not_a_stray_signature()
    {
        using var dir = new TempDir();
        byte[] file = Sample3();
        Array.Clear(file, 0, 0x1000);
        using (RunMappedMemory memory = CaptureOpener.Open(dir.Write("wiped.vmrs", file)))
        {
            Assert.StartsWith("Hyper-V storage container", memory.Metadata.Format);
            Assert.StartsWith("1 (sequence 1", memory.Metadata.Get("header copy"));
        }
        byte[] raw = new byte[0x4000];
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(0x1000), HyperVLayout.HeaderSignature);
        BinaryPrimitives.WriteUInt32LittleEndian(raw.AsSpan(0x1000 + HyperVLayout.HeaderVersionOffset), 0x12345678);
        using RunMappedMemory notHyperV = CaptureOpener.Open(dir.Write("raw.bin", raw));
        Assert.DoesNotContain("Hyper-V", notHyperV.Metadata.Format);
    }

    [SkippableFact]
    public void Header_fields_out_of_range_are_rejected()
    {
        using var dir = new TempDir();
        foreach ((int field, long value, string message) in new (int, long, string)[]
        {
            (HyperVLayout.HeaderVersionOffset, 0x0200, "not supported"),
            (HyperVLayout.HeaderAlignmentOffset, 0x1800, "power of two"),
            (HyperVLayout.HeaderReplayLogOffset, 0x7FFF_FFFF_0000, "replay log offset"),
            (HyperVLayout.HeaderReplayLogOffset, 0x100, "replay log offset"),
        })
        {
            byte[] file = Sample3();
            for (int copy = 0; copy < 2; copy++)
            {
                Span<byte> h = file.AsSpan(copy * 0x1000);
                if (field == HyperVLayout.HeaderReplayLogOffset)
                {
                    BinaryPrimitives.WriteInt64LittleEndian(h[field..], value);
                }
                else
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(h[field..], (uint)value);
                }
                ResealHeader(file, copy);
            }
            Assert.Contains(message, Rejects(dir, file).Message);
        }
    }

    [SkippableFact]
    public void Table_offsets_and_sizes_outside_the_file_are_rejected()
    {
        using var dir = new TempDir();
        // key table entry (root object table, entry 0): offset past the end, size past the end, size below a header
        foreach ((int field, long value, string message) in new (int, long, string)[]
        {
            (HyperVLayout.ObjectFileOffsetOffset, 0x10_0000_0000, "outside the file"),
            (HyperVLayout.ObjectFileOffsetOffset, -4096, "outside the file"),
            (HyperVLayout.ObjectSizeOffset, 0x7FFF_0000, "outside the file"),
            (HyperVLayout.ObjectSizeOffset, 4, "cannot hold"),
        })
        {
            byte[] file = Sample3();
            if (field == HyperVLayout.ObjectFileOffsetOffset)
            {
                BinaryPrimitives.WriteInt64LittleEndian(file.AsSpan(RootEntries + field), value);
            }
            else
            {
                BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(RootEntries + field), (uint)value);
            }
            ResealObjectEntry(file, RootEntries);
            Assert.Contains(message, Rejects(dir, file).Message);
        }
        // object table entry count running past the end of the file
        byte[] count = Sample3();
        BinaryPrimitives.WriteUInt32LittleEndian(count.AsSpan(0x2004), 0x0100_0000);
        Assert.Contains("past the end", Rejects(dir, count).Message);
        // the chain slot pointing outside the file, and back to the root table (a cycle)
        int chainSlot = RootEntries + ((HyperVLayout.ObjectEntriesPerTable - 1) * HyperVLayout.ObjectEntrySize);
        foreach ((long target, string message) in new[] { (0x40_0000_0000L, "outside the file"), (0x2000L, "referenced twice") })
        {
            byte[] chain = Sample3();
            chain[chainSlot] = HyperVLayout.ObjectTable;
            BinaryPrimitives.WriteInt64LittleEndian(chain.AsSpan(chainSlot + HyperVLayout.ObjectFileOffsetOffset), target);
            ResealObjectEntry(chain, chainSlot);
            Assert.Contains(message, Rejects(dir, chain).Message);
        }
        // bad signatures
        byte[] objectSignature = Sample3();
        objectSignature[0x2000] ^= 1;
        Assert.Contains("object table signature", Rejects(dir, objectSignature).Message);
        byte[] keySignature = Sample3();
        keySignature[FirstKeyTable] ^= 1;
        Assert.Contains("key table signature", Rejects(dir, keySignature).Message);
        byte[] replaySignature = Sample3();
        replaySignature[0x3000] ^= 1;
        Assert.Contains("replay log signature", Rejects(dir, replaySignature).Message);
        // a key entry whose size runs past its table, and one smaller than its header
        foreach (uint size in new uint[] { 0x2000, 5 })
        {
            byte[] entry = Sample3();
            BinaryPrimitives.WriteUInt32LittleEndian(entry.AsSpan(FirstKeyTable + HyperVLayout.KeyTableHeaderSize + HyperVLayout.KeySizeOffset), size);
            Assert.Contains("SizeInBytes", Rejects(dir, entry).Message);
        }
        // a name longer than its entry
        byte[] name = Sample3();
        name[FirstKeyTable + HyperVLayout.KeyTableHeaderSize + HyperVLayout.KeyNameSizeOffset] = 200;
        Assert.Contains("Name", Rejects(dir, name).Message);
        // a file-object value outside the file is shown as such, not fatal
        byte[] outside = Sample3();
        (int largeAt, _) = Entries(outside, FirstKeyTable).Single(e => e.Name == "large");
        int pointer = largeAt + HyperVLayout.KeyHeaderSize + "large".Length + 1 + 4;
        BinaryPrimitives.WriteInt64LittleEndian(outside.AsSpan(pointer), 0x7000_0000_0000);
        using RunMappedMemory memory = Open(dir, outside, name: "value.vmrs");
        Assert.Contains("outside the file", Tree(memory)["/configuration/settings/large"].Value);
        Assert.Contains(memory.Metadata.Warnings, w => w.Contains("fail their checksum"));
    }

    [SkippableFact]
    public void Cycles_and_dangling_parents_in_the_key_tree()
    {
        using var dir = new TempDir();
        byte[] file = Build(w => w.AddInt("/a/b/c", 1));
        List<(int Offset, string Name)> entries = Entries(file, FirstKeyTable);
        int a = entries.Single(e => e.Name == "a").Offset;
        int b = entries.Single(e => e.Name == "b").Offset;
        // a's parent is b (its own child): a -> b -> a
        byte[] cycle = (byte[])file.Clone();
        BinaryPrimitives.WriteUInt16LittleEndian(cycle.AsSpan(a + HyperVLayout.KeyParentTableOffset), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(cycle.AsSpan(a + HyperVLayout.KeyParentOffsetOffset), (uint)(b - FirstKeyTable));
        Assert.Contains("cycle", Rejects(dir, cycle).Message);
        // b is its own parent
        byte[] self = (byte[])file.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(self.AsSpan(b + HyperVLayout.KeyParentOffsetOffset), (uint)(b - FirstKeyTable));
        Assert.Contains("cycle", Rejects(dir, self).Message);
        // b's parent does not exist: b and c are dropped with a warning
        byte[] dangling = (byte[])file.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(dangling.AsSpan(b + HyperVLayout.KeyParentOffsetOffset), 0x777);
        using RunMappedMemory memory = Open(dir, dangling, name: "dangling.vmrs");
        Assert.Equal(["/a"], memory.Metadata.KeyTree.Select(k => k.Path));
        Assert.Contains(memory.Metadata.Warnings, w => w.Contains("missing or not a node"));
    }

    [SkippableFact]
    public void Limits_reject_excess_and_accept_reasonable_values()
    {
        using var dir = new TempDir();
        byte[] keys = Build(w =>
        {
            for (int i = 0; i < 50; i++)
            {
                w.AddInt($"/k/v{i}", i);
            }
        });
        Assert.Contains("MaxHyperVKeys", Rejects(dir, keys, new ParserLimits { MaxHyperVKeys = 50 }).Message);
        Open(dir, keys, new ParserLimits { MaxHyperVKeys = 51 }, "keys.vmrs").Dispose();

        byte[] deep = Build(w => w.AddInt("/" + string.Join('/', Enumerable.Repeat("n", 20)) + "/leaf", 1));
        Assert.Contains("MaxHyperVKeyDepth", Rejects(dir, deep, new ParserLimits { MaxHyperVKeyDepth = 20 }).Message);
        Open(dir, deep, new ParserLimits { MaxHyperVKeyDepth = 21 }, "deep.vmrs").Dispose();

        byte[] small = Sample3();
        Assert.Contains("MaxHyperVObjects", Rejects(dir, small, new ParserLimits { MaxHyperVObjects = 226 }).Message);
        Open(dir, small, new ParserLimits { MaxHyperVObjects = 227 }, "objects.vmrs").Dispose();

        Assert.Contains("MaxHyperVKeyTableBytes", Rejects(dir, small, new ParserLimits { MaxHyperVKeyTableBytes = 4095 }).Message);
        Open(dir, small, new ParserLimits { MaxHyperVKeyTableBytes = 4096 }, "table.vmrs").Dispose();

        byte[] chained = Build(w =>
        {
            for (int i = 0; i < 230; i++)
            {
                w.AddArray($"/o/{i}", new byte[2048]);
            }
        });
        Assert.Contains("MaxHyperVObjectTables", Rejects(dir, chained, new ParserLimits { MaxHyperVObjectTables = 1 }).Message);
        Open(dir, chained, new ParserLimits { MaxHyperVObjectTables = 3 }, "chained.vmrs").Dispose(); // 2 tables + 1 replay log

        byte[] replay = Sample3();
        BinaryPrimitives.WriteUInt32LittleEndian(replay.AsSpan(0x3000 + HyperVLayout.ReplayLogEntryCountOffset), 5);
        Assert.Contains("MaxHyperVReplayLogEntries", Rejects(dir, replay, new ParserLimits { MaxHyperVReplayLogEntries = 4 }).Message);
        using RunMappedMemory accepted = Open(dir, replay, new ParserLimits { MaxHyperVReplayLogEntries = 5 }, "replay.vmrs");
        Assert.Equal("5", accepted.Metadata.Get("replay log entries"));
        Assert.Contains(accepted.Metadata.Warnings, w => w.Contains("not replayed"));
    }

    [SkippableFact]
    public void Random_corruption_never_escapes_as_anything_but_a_format_error()
    {
        byte[] original = Build(w =>
        {
            w.AddInt("/savedstate/VmVersion", 0xA00);
            w.AddArray("/savedstate/RamMemoryBlock0", Descriptor(300, 0, 0x10));
            w.AddArray("/savedstate/RamBlock0", CaptureBuilder.Pattern(0, HyperVLayout.RamBlockSize));
            w.AddArray("/savedstate/RamBlock1", new byte[100]);
            w.AddString("/configuration/name", "x");
        });
        using var dir = new TempDir();
        string path = dir.File("fuzz.vmrs");
        var random = new Random(1234);
        byte[] buffer = new byte[4096];
        for (int round = 0; round < 300; round++)
        {
            byte[] file = original[..0x6000].Concat(original[0x6000..]).ToArray();
            int at = random.Next(0, 0x6000); // headers, object table, replay log, key tables
            file[at] = (byte)random.Next(256);
            if (random.Next(2) == 0)
            {
                ResealHeader(file, 0);
            }
            File.WriteAllBytes(path, file);
            try
            {
                using RunMappedMemory memory = CaptureOpener.OpenAs(path, "hyperv");
                foreach (PhysicalRun run in memory.Runs)
                {
                    memory.Read(run.PhysicalAddress, buffer);
                }
            }
            catch (DumpFormatException e)
            {
                Assert.DoesNotContain('\n', e.Message);
            }
        }
    }
}
