using System.Buffers.Binary;
using System.Text;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.VmStateParsers.Formats.Vmware;

/// <summary>
/// VMware checkpoint state (.vmsn snapshot or .vmss suspend): the group/tag container with a <c>memory</c> group whose
/// regionsCount/regionPPN[i]/regionPageNum[i]/regionSize[i] tags map guest pages to the memory store, the store being
/// a companion NAME.vmem (default) or an inline <c>Memory</c> block (variant <c>inline</c>).
/// </summary>
/// <remarks>
/// The default puts memory in a .vmem because that is what VMware Workstation/Fusion write for both suspend and
/// snapshot states on current products, and it is the only form Volatility 3 reads: its VmwareStacker stacks on a
/// NAME.vmem base layer and takes only the region tags from NAME.vmss (else NAME.vmsn); it never looks for an inline
/// <c>Memory</c> block (and it ignores block padding, so the memory group here holds no blocks in that form).
/// The inline form is what ESXi suspend files and older snapshots look like; crash and our reader read it.
/// One region per stretch of adjacent runs, widened to whole pages; the .vmem holds the regions back to back.
/// Written with the normal magic 0xBED2BED2 (8-byte block sizes), which every reader accepts.
/// </remarks>
public sealed class VmwareWriter(string name, string kind) : ICaptureWriter
{
    private const int PageSize = VmwareLayout.PageSize;
    private static readonly byte[] s_endOfGroup = new byte[VmwareLayout.TagWordSize];

    /// <inheritdoc />
    public string Name => name;

    /// <inheritdoc />
    public string Description => $"VMware {kind} state: NAME.{name} plus NAME.vmem (variant inline: memory inside the .{name})";

    /// <inheritdoc />
    public IReadOnlyList<string> Variants => ["vmem", "inline"];

    /// <inheritdoc />
    public string? VerifyAs => VmwareFormat.Id;

    /// <summary>One region: guest pages [Ppn, Ppn+Pages) stored from store page PageNum.</summary>
    public readonly record struct Region(ulong Ppn, ulong PageNum, ulong Pages)
    {
        /// <summary>First guest physical address of the region.</summary>
        public ulong Start => Ppn * PageSize;
        /// <summary>Guest physical address just past the region.</summary>
        public ulong End => (Ppn + Pages) * PageSize;
    }

    /// <summary>The regions for a run table: stretches of adjacent runs, widened to whole pages and merged.</summary>
    public static List<Region> Regions(IReadOnlyList<PhysicalRun> runs)
    {
        List<PageRange> ranges = PageRanges.Widen(runs, PageSize);
        var regions = new List<Region>(ranges.Count);
        ulong stored = 0;
        foreach (PageRange range in ranges)
        {
            ulong first = range.FirstPage(PageSize);
            ulong end = range.End / PageSize;
            if (end > uint.MaxValue || stored + (end - first) > uint.MaxValue)
            {
                throw new ConvertException($"physical memory up to 0x{end * PageSize:X} does not fit VMware's 32-bit page numbers (16 TiB)");
            }
            regions.Add(new Region(first, stored, end - first));
            stored += end - first;
        }
        return regions;
    }

    /// <inheritdoc />
    public WriterStatistics Write(IPhysicalMemory memory, WriterContext context)
    {
        bool inline = string.Equals(context.Variant, "inline", StringComparison.OrdinalIgnoreCase);
        List<Region> regions = Regions(memory.Runs);
        if (regions.Count == 0)
        {
            throw new ConvertException("the source holds no memory");
        }
        ulong storeBytes = (regions[^1].PageNum + regions[^1].Pages) * PageSize;
        string? vmemName = null;
        if (!inline)
        {
            vmemName = Path.ChangeExtension(context.MainName, VmwareLayout.CompanionExtension);
            if (string.Equals(vmemName, context.MainName, StringComparison.Ordinal))
            {
                throw new ConvertException($"{context.MainName}: the state file cannot end in .vmem, which is its memory file's name (use .{name})");
            }
        }

        var groups = new List<(string Name, byte[] Tags)>
        {
            (VmwareLayout.CheckpointGroup, CheckpointGroup(storeBytes)),
        };
        if (memory is ICaptureMetadata { Metadata.Cpus.Count: > 0 } withCpus)
        {
            groups.Add((VmwareLayout.CpuGroup, CpuGroup(withCpus.Metadata.Cpus)));
        }
        byte[] memoryTags = MemoryTags(regions);
        long tagsStart = VmwareLayout.HeaderSize + (long)(groups.Count + 1) * VmwareLayout.GroupSize;
        long position = tagsStart;
        using var header = new MemoryStream();
        byte[] fixedHeader = new byte[VmwareLayout.HeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(fixedHeader.AsSpan(VmwareLayout.MagicOffset), VmwareLayout.MagicNormal);
        BinaryPrimitives.WriteUInt32LittleEndian(fixedHeader.AsSpan(VmwareLayout.VersionOffset), 0);   // not interpreted by readers
        BinaryPrimitives.WriteUInt32LittleEndian(fixedHeader.AsSpan(VmwareLayout.NumGroupsOffset), (uint)(groups.Count + 1));
        header.Write(fixedHeader);
        foreach ((string groupName, byte[] tags) in groups)
        {
            WriteDescriptor(header, groupName, position, tags.Length);
            position += tags.Length;
        }
        long memoryGroup = position;
        byte[] blockHead = [];
        long dataOffset = 0;
        long memoryGroupSize;
        if (inline)
        {
            // Memory[0][0] block after the region tags, padded so its data starts on a page boundary.
            long headAt = memoryGroup + memoryTags.Length;
            int headLength = BlockHead(VmwareLayout.MemoryBlockTag, [0, 0], storeBytes, 0).Length;
            int padding = (int)((PageSize - (headAt + headLength) % PageSize) % PageSize);
            blockHead = BlockHead(VmwareLayout.MemoryBlockTag, [0, 0], storeBytes, padding);
            dataOffset = headAt + blockHead.Length;
            memoryGroupSize = memoryTags.Length + blockHead.Length + (long)storeBytes + s_endOfGroup.Length;
        }
        else
        {
            memoryGroupSize = memoryTags.Length + s_endOfGroup.Length;
        }
        WriteDescriptor(header, VmwareLayout.MemoryGroup, memoryGroup, memoryGroupSize);

        OutputFile state = context.CreateMain();
        state.Write(header.ToArray());
        foreach ((_, byte[] tags) in groups)
        {
            state.Write(tags);
        }
        state.Write(memoryTags);
        OutputFile store = state;
        if (inline)
        {
            state.Write(blockHead);
        }
        else
        {
            state.Write(s_endOfGroup);
            store = context.Create(vmemName!);
        }

        ulong written = 0;
        int current = 0;
        ulong unreadable = SequentialReader.ForEachBlock(memory, (pa, data) =>
        {
            while (pa >= regions[current].End)
            {
                current++;
            }
            Region r = regions[current];
            store.WriteAt(dataOffset + (long)(r.PageNum * PageSize + (pa - r.Start)), data);
            written += (ulong)data.Length;
            context.ReportWritten(written);
            return true;
        }, cancellationToken: context.CancellationToken);
        // Pages widened to page boundaries, holes of unreadable pages and the tail read as zero.
        store.Reserve(dataOffset + (long)storeBytes);
        if (inline)
        {
            state.WriteAt(dataOffset + (long)storeBytes, s_endOfGroup);
        }
        return new WriterStatistics(regions.Count, unreadable);
    }

    private static byte[] CheckpointGroup(ulong storeBytes)
    {
        using var tags = new MemoryStream();
        Tag(tags, VmwareLayout.MemSizeTag, [], U32((uint)Math.Min(uint.MaxValue, (storeBytes + (1 << 20) - 1) >> 20)));   // MiB
        tags.Write(s_endOfGroup);
        return tags.ToArray();
    }

    private static byte[] MemoryTags(List<Region> regions)
    {
        using var tags = new MemoryStream();
        Tag(tags, VmwareLayout.RegionsCountTag, [], U32((uint)regions.Count));
        for (int i = 0; i < regions.Count; i++)
        {
            Tag(tags, VmwareLayout.RegionPageNumTag, [(uint)i], U32((uint)regions[i].PageNum));
            Tag(tags, VmwareLayout.RegionPpnTag, [(uint)i], U32((uint)regions[i].Ppn));
            Tag(tags, VmwareLayout.RegionSizeTag, [(uint)i], U32((uint)regions[i].Pages));
        }
        return tags.ToArray();
    }

    private static byte[] CpuGroup(IReadOnlyList<CpuState> cpus)
    {
        // Several note types may describe the same CPU: merge them by index, the first value of a register wins.
        var merged = new SortedDictionary<int, Dictionary<string, ulong>>();
        foreach (CpuState cpu in cpus)
        {
            if (!merged.TryGetValue(cpu.Index, out Dictionary<string, ulong>? registers))
            {
                merged[cpu.Index] = registers = [];
            }
            foreach (KeyValuePair<string, ulong> pair in cpu.Registers)
            {
                registers.TryAdd(pair.Key, pair.Value);
            }
        }
        using var tags = new MemoryStream();
        Tag(tags, VmwareLayout.NumVcpusTag, [], U32((uint)(merged.Keys.Max() + 1)));
        foreach ((int index, Dictionary<string, ulong> registers) in merged)
        {
            foreach (string gpr in VmwareLayout.Gprs64)
            {
                if (registers.TryGetValue(gpr, out ulong value))
                {
                    Tag(tags, gpr, [(uint)index], U64(value));
                }
            }
            for (uint n = 0; n <= 4; n++)
            {
                if (registers.TryGetValue($"cr{n}", out ulong value))
                {
                    Tag(tags, VmwareLayout.Cr64Tag, [(uint)index, n], U64(value));
                }
            }
        }
        tags.Write(s_endOfGroup);
        return tags.ToArray();
    }

    /// <summary>A tag with an inline value: word, name, indices, value.</summary>
    private static void Tag(Stream output, string tagName, uint[] indices, byte[] value)
    {
        TagHead(output, tagName, indices, value.Length);
        output.Write(value);
    }

    /// <summary>A block tag up to its data: word (size 63), name, indices, diskSize, memSize, padLen, padding.</summary>
    private static byte[] BlockHead(string tagName, uint[] indices, ulong size, int padding)
    {
        using var output = new MemoryStream();
        TagHead(output, tagName, indices, VmwareLayout.Block);
        output.Write(U64(size));
        output.Write(U64(size));
        byte[] padLength = new byte[VmwareLayout.BlockPadLengthSize];
        BinaryPrimitives.WriteUInt16LittleEndian(padLength, (ushort)padding);
        output.Write(padLength);
        output.Write(new byte[padding]);
        return output.ToArray();
    }

    /// <summary>The tag word ((name length &lt;&lt; 8) | (index count &lt;&lt; 6) | value size), the name and the indices.</summary>
    private static void TagHead(Stream output, string tagName, uint[] indices, int valueSize)
    {
        byte[] nameBytes = Encoding.ASCII.GetBytes(tagName);
        int word = (nameBytes.Length << VmwareLayout.TagNameLengthShift) | (indices.Length << VmwareLayout.TagIndexCountShift) | valueSize;
        byte[] wordBytes = new byte[VmwareLayout.TagWordSize];
        BinaryPrimitives.WriteUInt16LittleEndian(wordBytes, (ushort)word);
        output.Write(wordBytes);
        output.Write(nameBytes);
        foreach (uint index in indices)
        {
            output.Write(U32(index));
        }
    }

    private static void WriteDescriptor(Stream output, string groupName, long position, long size)
    {
        byte[] descriptor = new byte[VmwareLayout.GroupSize];
        Encoding.ASCII.GetBytes(groupName).CopyTo(descriptor, VmwareLayout.GroupNameOffset);
        BinaryPrimitives.WriteInt64LittleEndian(descriptor.AsSpan(VmwareLayout.GroupPositionOffset), position);
        BinaryPrimitives.WriteInt64LittleEndian(descriptor.AsSpan(VmwareLayout.GroupSizeOffset), size);
        output.Write(descriptor);
    }

    private static byte[] U32(uint value)
    {
        byte[] bytes = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        return bytes;
    }

    private static byte[] U64(ulong value)
    {
        byte[] bytes = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        return bytes;
    }
}
