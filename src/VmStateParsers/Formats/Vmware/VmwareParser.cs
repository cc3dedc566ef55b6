using System.Globalization;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Vmware;

/// <summary>
/// Turns a parsed checkpoint into a run table over its memory store (the companion .vmem, or the inline
/// <c>Memory</c> block of the state file) and collects metadata and CPU state.
/// </summary>
internal static class VmwareParser
{
    private const string F = Checkpoint.FormatName;
    private const int ListedRegions = 16;
    private const int ListedGroups = 48;
    private static readonly string[] s_registers = [.. VmwareLayout.Gprs64, .. VmwareLayout.OtherRegisters];

    /// <summary>Opened from the state file (.vmss/.vmsn): memory inline, or in the companion .vmem.</summary>
    public static ParsedCapture ParseState(IByteSource state, ParserLimits limits)
    {
        Checkpoint checkpoint = Checkpoint.Read(state, limits);
        CheckpointTag? block = MemoryBlock(checkpoint);
        var metadata = new CaptureMetadata("VMware checkpoint");
        if (block is not null)
        {
            Describe(checkpoint, state, Path.GetFileName(state.Path), $"inline (Memory block data at 0x{block.ValueOffset:X}, 0x{block.ValueSize:X} bytes, {block.Padding} padding bytes before it)", metadata);
            PhysicalRun[] runs = BuildRuns(checkpoint, state, block.ValueOffset, (long)block.ValueSize, state.Length, limits, metadata);
            ReadCpus(checkpoint, state, limits, metadata);
            return new ParsedCapture(state, runs, null, metadata);
        }
        string vmemPath = Companions.Sibling(state.Path, VmwareLayout.CompanionExtension);
        CheckpointGroup? memoryGroup = checkpoint.Groups.FirstOrDefault(g => g.Name == VmwareLayout.MemoryGroup);
        if (!File.Exists(vmemPath))
        {
            throw Fail.At(F, "memory", memoryGroup?.Position ?? -1,
                $"this state file holds no memory (no Memory block) and its companion {vmemPath} does not exist");
        }
        IByteSource vmem = Companions.Open(vmemPath, F, "memory");
        try
        {
            Describe(checkpoint, state, Path.GetFileName(state.Path), $"{Path.GetFileName(vmemPath)} (companion, 0x{vmem.Length:X} bytes)", metadata);
            PhysicalRun[] runs = BuildRuns(checkpoint, state, 0, vmem.Length, vmem.Length, limits, metadata);
            ReadCpus(checkpoint, state, limits, metadata);
            return new ParsedCapture(new OwningSource(vmem, state), runs, null, metadata);
        }
        catch
        {
            vmem.Dispose();
            throw;
        }
    }

    /// <summary>Opened from the .vmem: the run table comes from the sibling state file, which is closed afterwards.</summary>
    public static ParsedCapture ParseVmem(IByteSource vmem, string statePath, ParserLimits limits)
    {
        string stateName = Path.GetFileName(statePath);
        using IByteSource state = Companions.Open(statePath, F, "state file");
        try
        {
            Checkpoint checkpoint = Checkpoint.Read(state, limits);
            var metadata = new CaptureMetadata("VMware checkpoint");
            Describe(checkpoint, state, stateName, $"{Path.GetFileName(vmem.Path)} (opened; layout from {stateName})", metadata);
            if (MemoryBlock(checkpoint) is not null)
            {
                metadata.Warnings.Add($"{stateName} also holds memory inline; reading the .vmem that was opened");
            }
            PhysicalRun[] runs = BuildRuns(checkpoint, state, 0, vmem.Length, vmem.Length, limits, metadata);
            ReadCpus(checkpoint, state, limits, metadata);
            return new ParsedCapture(vmem, runs, null, metadata);
        }
        catch (FormatErrorException e)
        {
            // The offset is in the state file, not in the .vmem that was opened: say which file.
            throw new FormatErrorException(e.Error with { Format = $"{F} ({stateName})" });
        }
    }

    private static CheckpointTag? MemoryBlock(Checkpoint checkpoint)
    {
        CheckpointTag? first = null;
        foreach (CheckpointTag tag in checkpoint.Tags)
        {
            if (tag.Group == VmwareLayout.MemoryGroup && tag.Name == VmwareLayout.MemoryBlockTag && tag.IsBlock)
            {
                if (tag.Compressed)
                {
                    throw Fail.At(F, $"group 'memory' {tag.Label}", tag.Offset, "memory is stored compressed (value size 62), whose codec is not documented; cannot read it");
                }
                if (tag.Is(VmwareLayout.MemoryBlockTag, 0, 0))
                {
                    return tag;
                }
                first ??= tag;
            }
        }
        return first;
    }

    private readonly record struct Region(ulong Ppn, ulong PageNum, ulong Pages, int Index, long DescribedAt);

    private static PhysicalRun[] BuildRuns(Checkpoint checkpoint, IByteSource state, long storeBase, long storeLength, long fileLength, ParserLimits limits, CaptureMetadata metadata)
    {
        var builder = new RunMapBuilder(F, fileLength, limits);
        CheckpointTag? countTag = checkpoint.Find(VmwareLayout.MemoryGroup, VmwareLayout.RegionsCountTag);
        ulong count = countTag is null ? 0 : Checkpoint.Integer(state, countTag);
        ulong missing = 0;
        if (count > (ulong)limits.MaxMemoryRegions)
        {
            throw Fail.At(F, "group 'memory' regionsCount", countTag!.Offset, $"{count} regions is more than {limits.MaxMemoryRegions} (ParserLimits.MaxMemoryRegions)");
        }
        if (count == 0)
        {
            metadata.Add("regions", "none: memory is linear from physical 0");
            builder.Add(new PhysicalRun(0, (ulong)storeLength, storeBase), "memory", storeBase);
        }
        else
        {
            var regions = new Region[count];
            for (uint i = 0; i < count; i++)
            {
                regions[i] = new Region(Value(VmwareLayout.RegionPpnTag, i), Value(VmwareLayout.RegionPageNumTag, i), Value(VmwareLayout.RegionSizeTag, i), (int)i,
                    checkpoint.Find(VmwareLayout.MemoryGroup, VmwareLayout.RegionPpnTag, i)!.Offset);
            }
            Array.Sort(regions, (a, b) => a.Ppn.CompareTo(b.Ppn));
            metadata.Add("regions", count.ToString(CultureInfo.InvariantCulture));
            ulong maxPage = limits.MaxPhysicalAddress >> VmwareLayout.PageShift;
            foreach (Region r in regions)
            {
                string structure = $"group 'memory' regionPPN[{r.Index}]";
                if (r.Ppn > maxPage || r.Pages > maxPage || r.PageNum > maxPage)
                {
                    throw Fail.At(F, structure, r.DescribedAt, $"region PPN 0x{r.Ppn:X}, page 0x{r.PageNum:X}, 0x{r.Pages:X} pages is past the physical-address limit");
                }
                if (r.Index < ListedRegions)
                {
                    metadata.Add($"region[{r.Index}]", $"PPN 0x{r.Ppn:X} ({r.Pages} pages, physical 0x{r.Ppn << VmwareLayout.PageShift:X}-0x{((r.Ppn + r.Pages) << VmwareLayout.PageShift) - 1:X}) at store page 0x{r.PageNum:X}");
                }
                ulong length = r.Pages << VmwareLayout.PageShift;
                ulong storeOffset = r.PageNum << VmwareLayout.PageShift;
                ulong available = storeOffset >= (ulong)storeLength ? 0 : (ulong)storeLength - storeOffset;
                if (length > available)
                {
                    missing += length - available;
                    length = available;
                }
                builder.Add(new PhysicalRun(r.Ppn << VmwareLayout.PageShift, length, storeBase + (long)storeOffset), structure, r.DescribedAt);
            }
            if (count > ListedRegions)
            {
                metadata.Add("region[...]", $"{count - ListedRegions} more");
            }
        }
        missing += builder.TruncatedBytes;
        if (missing > 0)
        {
            metadata.Warnings.Add($"the memory store is short: 0x{missing:X} bytes of the regions are missing (truncated file?)");
        }
        if (builder.Count == 0)
        {
            throw Fail.At(F, "memory", countTag?.Offset ?? -1, "the memory store holds no pages");
        }
        return builder.ToArray();

        ulong Value(string name, uint index)
        {
            CheckpointTag tag = checkpoint.Find(VmwareLayout.MemoryGroup, name, index)
                ?? throw Fail.At(F, $"group 'memory' {name}[{index}]", countTag!.Offset, $"missing (regionsCount is {count})");
            return Checkpoint.Integer(state, tag);
        }
    }

    private static void Describe(Checkpoint checkpoint, IByteSource state, string stateName, string store, CaptureMetadata metadata)
    {
        metadata.Add("state file", stateName);
        metadata.Add("memory", store);
        metadata.Add("magic", $"0x{checkpoint.Magic:X8} ({VmwareLayout.MagicName(checkpoint.Magic)})");
        metadata.Add("version", checkpoint.Version.ToString(CultureInfo.InvariantCulture));
        metadata.Add("block size fields", $"{checkpoint.SizeWidth} bytes");
        metadata.Add("groups", checkpoint.Groups.Count.ToString(CultureInfo.InvariantCulture));
        string list = string.Join(", ", checkpoint.Groups.Take(ListedGroups).Select(g => $"{g.Name} ({g.TagCount})"));
        metadata.Add("group tags", checkpoint.Groups.Count > ListedGroups ? $"{list}, ... {checkpoint.Groups.Count - ListedGroups} more" : list);
        if (checkpoint.Find(VmwareLayout.MemoryGroup, "align_mask") is { IsBlock: false } align)
        {
            metadata.Add("align_mask", $"0x{Checkpoint.Integer(state, align):X}");
        }
    }

    private static void ReadCpus(Checkpoint checkpoint, IByteSource state, ParserLimits limits, CaptureMetadata metadata)
    {
        CheckpointTag? countTag = checkpoint.Find(VmwareLayout.CpuGroup, VmwareLayout.NumVcpusTag);
        ulong declared = countTag is null || countTag.IsBlock ? 0 : Checkpoint.Integer(state, countTag);
        if (declared > (ulong)limits.MaxCpus)
        {
            throw Fail.At(F, "group 'cpu' cpu:numVCPUs", countTag!.Offset, $"{declared} CPUs is more than {limits.MaxCpus} (ParserLimits.MaxCpus)");
        }
        if (countTag is not null)
        {
            metadata.Add("vcpus", declared.ToString(CultureInfo.InvariantCulture));
        }
        var cpus = new SortedDictionary<uint, List<KeyValuePair<string, ulong>>>();
        foreach (CheckpointTag tag in checkpoint.Tags)
        {
            if (tag.Group != VmwareLayout.CpuGroup || tag.Indices.Length == 0)
            {
                continue;
            }
            uint cpu = tag.Indices[0];
            if ((declared > 0 && cpu >= declared) || cpu >= (uint)limits.MaxCpus)
            {
                continue;
            }
            if (tag.Name is VmwareLayout.Cr64Tag or "CR" && !tag.IsBlock && tag.Indices.Length == 2 && tag.Indices[1] <= 8)
            {
                Set(cpu, $"cr{tag.Indices[1]}", Checkpoint.Integer(state, tag));
            }
            else if (tag.Name == VmwareLayout.Cr64Tag && tag.IsBlock && !tag.Compressed && tag.Indices.Length == 1)
            {
                // CR0..CR4 as consecutive u64 values.
                ReadOnlySpan<byte> data = state.Span(tag.ValueOffset, (int)Math.Min(tag.ValueSize, 5 * 8));
                for (int n = 0; n + 8 <= data.Length; n += 8)
                {
                    Set(cpu, $"cr{n / 8}", System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(data[n..]));
                }
            }
            else if (!tag.IsBlock && tag.Indices.Length == 1 && tag.ValueSize is 4 or 8 && Array.IndexOf(s_registers, tag.Name.ToLowerInvariant()) >= 0)
            {
                Set(cpu, tag.Name.ToLowerInvariant(), Checkpoint.Integer(state, tag));
            }
        }
        foreach ((uint cpu, List<KeyValuePair<string, ulong>> registers) in cpus)
        {
            metadata.Cpus.Add(new CpuState((int)cpu, "VMware cpu group", registers));
        }

        void Set(uint cpu, string name, ulong value)
        {
            if (!cpus.TryGetValue(cpu, out List<KeyValuePair<string, ulong>>? registers))
            {
                cpus[cpu] = registers = [];
            }
            int at = registers.FindIndex(r => r.Key == name);
            if (at >= 0)
            {
                registers[at] = new(name, value);
            }
            else
            {
                registers.Add(new(name, value));
            }
        }
    }
}
