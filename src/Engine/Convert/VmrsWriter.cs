using System.Buffers.Binary;
using System.Globalization;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Formats.HyperV;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.Engine.Convert;

/// <summary>
/// Hyper-V saved state (.vmrs) holding a capture's RAM the way Hyper-V stores it: one <c>/savedstate/RamMemoryBlock%d</c>
/// descriptor (version 3) per contiguous page range and its pages in <c>/savedstate/RamBlock%u</c> file objects of
/// exactly 1 MiB, uncompressed (a range's last block is zero-padded, so every block is unambiguously raw). Each range
/// starts a new block, as Microsoft's dump writer does. Also written: <c>/savedstate/VmVersion</c> and
/// <c>/configuration/properties/version</c> (10.0) and <c>/savedstate/savedVM/partition_state</c> with the source's
/// x86-64 registers (see <see cref="PartitionState"/>), or empty when the source recorded none, in which case tools that
/// need processor state (Microsoft's dump provider) may refuse the file.
/// Runs that do not start or end on a page boundary are widened to whole pages; the added bytes are zero.
/// </summary>
public sealed class VmrsWriter : ICaptureWriter
{
    private const long VmVersion = 0x0A00;

    /// <inheritdoc />
    public string Name => "vmrs";

    /// <inheritdoc />
    public string Description => "Hyper-V saved state (.vmrs, HyperVStorage 4.0; uncompressed 1 MiB RAM blocks; x86-64 registers when known)";

    /// <inheritdoc />
    public string? VerifyAs => "hyperv";

    /// <inheritdoc />
    public WriterStatistics Write(IPhysicalMemory memory, WriterContext context)
    {
        var container = new HyperVContainerWriter();
        container.AddInt("/savedstate/VmVersion", VmVersion);
        container.AddArray("/savedstate/savedVM/partition_state",
            PartitionState(memory is ICaptureMetadata m ? m.Metadata.Cpus : []));
        List<(ulong Start, ulong End)> ranges = PageRanges(memory.Runs);
        var blocks = new List<(ulong Start, ulong End)>();
        for (int i = 0; i < ranges.Count; i++)
        {
            (ulong start, ulong end) = ranges[i];
            byte[] descriptor = new byte[HyperVLayout.RamMemoryBlockSize];
            BinaryPrimitives.WriteUInt32LittleEndian(descriptor.AsSpan(HyperVLayout.MemoryBlockVersionOffset), 3);
            BinaryPrimitives.WriteUInt64LittleEndian(descriptor.AsSpan(HyperVLayout.MemoryBlockPageCountOffset), (end - start) / HyperVLayout.PageSize);
            BinaryPrimitives.WriteUInt64LittleEndian(descriptor.AsSpan(HyperVLayout.MemoryBlockMbpStartOffset), (ulong)blocks.Count * HyperVLayout.PagesPerRamBlock);
            BinaryPrimitives.WriteUInt64LittleEndian(descriptor.AsSpan(HyperVLayout.MemoryBlockGpaStartOffset), start / HyperVLayout.PageSize);
            container.AddArray("/savedstate/" + HyperVLayout.RamMemoryBlockPrefix + i.ToString(CultureInfo.InvariantCulture), descriptor);
            for (ulong pa = start; pa < end; pa += HyperVLayout.RamBlockSize)
            {
                blocks.Add((pa, Math.Min(end, pa + HyperVLayout.RamBlockSize)));
            }
        }
        ulong unreadable = 0;
        ulong written = 0;
        for (int n = 0; n < blocks.Count; n++)
        {
            (ulong start, ulong end) = blocks[n];
            container.AddFileObject("/savedstate/" + HyperVLayout.RamBlockPrefix + n.ToString(CultureInfo.InvariantCulture), HyperVLayout.RamBlockSize, buffer =>
            {
                context.CancellationToken.ThrowIfCancellationRequested();
                unreadable += Fill(memory, start, end, buffer);
                written += end - start;
                context.ReportWritten(written);
            });
        }
        container.AddInt("/configuration/properties/version", VmVersion);
        OutputFile file = context.CreateMain();
        long length = container.Write(file.WriteAt);
        file.Reserve(length);
        file.WriteAt(length, ReadOnlySpan<byte>.Empty);
        return new WriterStatistics(blocks.Count, unreadable);
    }

    /// <summary>
    /// A partition_state blob carrying the x86-64 registers the source recorded (general-purpose and control registers,
    /// one virtual processor per CPU that has a CR3), in the chunk layout of Microsoft's dump writer; empty when no CPU
    /// state is known.
    /// </summary>
    public static byte[] PartitionState(IReadOnlyList<CpuState> cpus)
    {
        List<CpuState> x64 = cpus.Where(c => c.TryGet("cr3", out _) && c.TryGet("rip", out _)).ToList();
        if (x64.Count == 0)
        {
            return [];
        }
        var blob = new MemoryStream();
        blob.Write(new byte[HyperVPartitionState.DescriptorSize + HyperVPartitionState.ChunkHeaderSize]);
        byte[] prolog = new byte[HyperVPartitionState.PrologSize - HyperVPartitionState.ChunkHeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(prolog, HyperVPartitionState.PrologTag);
        BinaryPrimitives.WriteUInt32LittleEndian(prolog.AsSpan(HyperVPartitionState.PrologVendorOffset - HyperVPartitionState.ChunkHeaderSize), 1); // Intel
        Chunk(blob, HyperVPartitionState.ChunkProlog, prolog);
        Chunk(blob, HyperVPartitionState.ChunkOsId, new byte[16]);
        byte[] indices = new byte[48];
        for (int i = 0; i < Math.Min(x64.Count, 240); i++)
        {
            indices[4 + (i / 8)] |= (byte)(1 << (i % 8));
        }
        Chunk(blob, HyperVPartitionState.ChunkVpIndices, indices);
        for (int i = 0; i < x64.Count; i++)
        {
            byte[] vp = new byte[16];
            BinaryPrimitives.WriteUInt32LittleEndian(vp, (uint)i);
            Chunk(blob, HyperVPartitionState.ChunkVp, vp);
            Chunk(blob, HyperVPartitionState.ChunkGpRegisters, Registers(x64[i], HyperVPartitionState.GpRegisters));
            Chunk(blob, HyperVPartitionState.ChunkControlRegisters, Registers(x64[i], HyperVPartitionState.ControlRegisters));
        }
        Chunk(blob, HyperVPartitionState.ChunkEpilog, []);
        byte[] result = blob.ToArray();
        BinaryPrimitives.WriteUInt64LittleEndian(result, HyperVPartitionState.DescriptorSize);
        BinaryPrimitives.WriteUInt64LittleEndian(result.AsSpan(8), HyperVPartitionState.DescriptorSize);
        BinaryPrimitives.WriteUInt64LittleEndian(result.AsSpan(16), (ulong)result.Length);
        return result;
    }

    private static byte[] Registers(CpuState cpu, string[] names)
    {
        byte[] data = new byte[names.Length * 8];
        for (int i = 0; i < names.Length; i++)
        {
            if (cpu.TryGet(names[i], out ulong value) || (names[i] == "rflags" && cpu.TryGet("eflags", out value)))
            {
                BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(i * 8), value);
            }
        }
        return data;
    }

    private static void Chunk(MemoryStream blob, uint id, byte[] data)
    {
        byte[] header = new byte[HyperVPartitionState.ChunkHeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(header, id);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), (uint)data.Length);
        blob.Write(header);
        blob.Write(data);
    }

    /// <summary>Copies the captured bytes of [start, end) into <paramref name="buffer"/> (cleared); returns bytes that could not be read.</summary>
    private static ulong Fill(IPhysicalMemory memory, ulong start, ulong end, Span<byte> buffer)
    {
        ulong unreadable = 0;
        foreach (PhysicalRun run in memory.Runs)
        {
            if (run.End <= start || run.PhysicalAddress >= end)
            {
                continue;
            }
            ulong from = Math.Max(start, run.PhysicalAddress);
            ulong to = Math.Min(end, run.End);
            Span<byte> target = buffer.Slice((int)(from - start), (int)(to - from));
            while (!target.IsEmpty)
            {
                int read = memory.Read(from, target);
                if (read == target.Length)
                {
                    break;
                }
                // A hole inside a run (undecodable page): skip one page of it, leaving zeros.
                int skip = Math.Min(target.Length, read + HyperVLayout.PageSize - (int)((from + (ulong)read) % HyperVLayout.PageSize));
                unreadable += (ulong)(skip - read);
                from += (ulong)skip;
                target = target[skip..];
            }
        }
        return unreadable;
    }

    /// <summary>The runs widened to whole pages, merged where they touch or overlap.</summary>
    public static List<(ulong Start, ulong End)> PageRanges(IReadOnlyList<PhysicalRun> runs)
    {
        const ulong Mask = HyperVLayout.PageSize - 1;
        var ranges = new List<(ulong Start, ulong End)>();
        foreach (PhysicalRun run in runs)
        {
            ulong start = run.PhysicalAddress & ~Mask;
            ulong end = (run.End + Mask) & ~Mask;
            if (ranges.Count > 0 && start <= ranges[^1].End)
            {
                ranges[^1] = (ranges[^1].Start, Math.Max(ranges[^1].End, end));
            }
            else
            {
                ranges.Add((start, end));
            }
        }
        return ranges;
    }
}
