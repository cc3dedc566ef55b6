using System.Buffers.Binary;
using System.Globalization;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.VmStateParsers.Formats.HyperV;

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
    public string? VerifyAs => HyperVFormat.Id;

    /// <inheritdoc />
    public WriterStatistics Write(IPhysicalMemory memory, WriterContext context)
    {
        var container = new HyperVContainerWriter();
        container.AddInt(HyperVLayout.VmVersionKey, VmVersion);
        container.AddArray(HyperVLayout.PartitionStateKey,
            PartitionState(memory is ICaptureMetadata m ? m.Metadata.Cpus : []));
        List<PageRange> ranges = PageRanges.Widen(memory.Runs, HyperVLayout.PageSize);
        var blocks = new List<(ulong Start, ulong End)>();
        for (int i = 0; i < ranges.Count; i++)
        {
            (ulong start, ulong end) = (ranges[i].Start, ranges[i].End);
            byte[] descriptor = new byte[HyperVLayout.RamMemoryBlockSize];
            BinaryPrimitives.WriteUInt32LittleEndian(descriptor.AsSpan(HyperVLayout.MemoryBlockVersionOffset), HyperVLayout.MemoryBlockVersion);
            BinaryPrimitives.WriteUInt64LittleEndian(descriptor.AsSpan(HyperVLayout.MemoryBlockPageCountOffset), (end - start) / HyperVLayout.PageSize);
            BinaryPrimitives.WriteUInt64LittleEndian(descriptor.AsSpan(HyperVLayout.MemoryBlockMbpStartOffset), (ulong)blocks.Count * HyperVLayout.PagesPerRamBlock);
            BinaryPrimitives.WriteUInt64LittleEndian(descriptor.AsSpan(HyperVLayout.MemoryBlockGpaStartOffset), start / HyperVLayout.PageSize);
            container.AddArray(HyperVLayout.SavedStatePath + HyperVLayout.RamMemoryBlockPrefix + i.ToString(CultureInfo.InvariantCulture), descriptor);
            for (ulong pa = start; pa < end; pa += HyperVLayout.RamBlockSize)
            {
                blocks.Add((pa, Math.Min(end, pa + HyperVLayout.RamBlockSize)));
            }
        }
        var reader = new PageReader(memory, HyperVLayout.PageSize);
        ulong written = 0;
        for (int n = 0; n < blocks.Count; n++)
        {
            (ulong start, ulong end) = blocks[n];
            container.AddFileObject(HyperVLayout.SavedStatePath + HyperVLayout.RamBlockPrefix + n.ToString(CultureInfo.InvariantCulture), HyperVLayout.RamBlockSize, buffer =>
            {
                context.CancellationToken.ThrowIfCancellationRequested();
                reader.Read(start, buffer[..(int)(end - start)]);
                written += end - start;
                context.ReportWritten(written);
            });
        }
        container.AddInt(HyperVLayout.ConfigurationVersionKey, VmVersion);
        OutputFile file = context.CreateMain();
        long length = container.Write(file.WriteAt);
        file.Reserve(length);
        file.WriteAt(length, ReadOnlySpan<byte>.Empty);
        return new WriterStatistics(blocks.Count, reader.UnreadableBytes);
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
        BinaryPrimitives.WriteUInt32LittleEndian(prolog.AsSpan(HyperVPartitionState.PrologTagOffset), HyperVPartitionState.PrologTag);
        BinaryPrimitives.WriteUInt32LittleEndian(prolog.AsSpan(HyperVPartitionState.PrologVendorOffset - HyperVPartitionState.ChunkHeaderSize), HyperVPartitionState.VendorIntel);
        Chunk(blob, HyperVPartitionState.ChunkProlog, prolog);
        Chunk(blob, HyperVPartitionState.ChunkOsId, new byte[HyperVPartitionState.OsIdSize]);
        byte[] indices = new byte[HyperVPartitionState.VpIndicesSize];
        for (int i = 0; i < Math.Min(x64.Count, HyperVPartitionState.MaxVirtualProcessors); i++)
        {
            indices[HyperVPartitionState.VpIndicesBitmapOffset + (i / 8)] |= (byte)(1 << (i % 8));
        }
        Chunk(blob, HyperVPartitionState.ChunkVpIndices, indices);
        for (int i = 0; i < x64.Count; i++)
        {
            byte[] vp = new byte[HyperVPartitionState.VpSize];
            BinaryPrimitives.WriteUInt32LittleEndian(vp.AsSpan(HyperVPartitionState.VpIndexOffset), (uint)i);
            Chunk(blob, HyperVPartitionState.ChunkVp, vp);
            Chunk(blob, HyperVPartitionState.ChunkGpRegisters, Registers(x64[i], HyperVPartitionState.GpRegisters));
            Chunk(blob, HyperVPartitionState.ChunkControlRegisters, Registers(x64[i], HyperVPartitionState.ControlRegisters));
        }
        Chunk(blob, HyperVPartitionState.ChunkEpilog, []);
        byte[] result = blob.ToArray();
        BinaryPrimitives.WriteUInt64LittleEndian(result, HyperVPartitionState.DescriptorSize);
        BinaryPrimitives.WriteUInt64LittleEndian(result.AsSpan(HyperVPartitionState.DescriptorHeaderSizeOffset), HyperVPartitionState.DescriptorSize);
        BinaryPrimitives.WriteUInt64LittleEndian(result.AsSpan(HyperVPartitionState.DescriptorTotalSizeOffset), (ulong)result.Length);
        return result;
    }

    private static byte[] Registers(CpuState cpu, string[] names)
    {
        byte[] data = new byte[names.Length * HyperVPartitionState.RegisterSize];
        for (int i = 0; i < names.Length; i++)
        {
            if (cpu.TryGet(names[i], out ulong value) || (names[i] == "rflags" && cpu.TryGet("eflags", out value)))
            {
                BinaryPrimitives.WriteUInt64LittleEndian(data.AsSpan(i * HyperVPartitionState.RegisterSize), value);
            }
        }
        return data;
    }

    private static void Chunk(MemoryStream blob, uint id, byte[] data)
    {
        byte[] header = new byte[HyperVPartitionState.ChunkHeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(HyperVPartitionState.ChunkIdOffset), id);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(HyperVPartitionState.ChunkLengthOffset), (uint)data.Length);
        blob.Write(header);
        blob.Write(data);
    }
}
