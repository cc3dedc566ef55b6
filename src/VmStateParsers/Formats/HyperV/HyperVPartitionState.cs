using System.Buffers.Binary;

namespace CloudMem.VmStateParsers.Formats.HyperV;

/// <summary>
/// The processor state blob (<c>/savedstate/savedVM/partition_state</c>): a descriptor {u64 descriptor size, u64 header
/// size, u64 total size}, then from header size + 16 a stream of chunks, each a 16-byte header {u32 id, u32 data length,
/// 8 bytes} and its data. Per virtual processor: a VP marker, optional VTL markers, general-purpose and control register
/// chunks. Source: Microsoft's chunk definitions and dump writer (microsoft/openvmm hvdef save_restore.rs,
/// hv_saved_state partition_state.rs), which say the layout is the hypervisor's own; not yet checked against a blob that
/// Hyper-V wrote. Only the x64 register chunks are decoded.
/// </summary>
public static class HyperVPartitionState
{
    /// <summary>Size of the blob's descriptor {u64 descriptor size, u64 header size, u64 total size}.</summary>
    public const int DescriptorSize = 24;
    /// <summary>Offset of the header size in the descriptor (u64).</summary>
    public const int DescriptorHeaderSizeOffset = 8;   // u64 (at 0: u64 descriptor size)
    /// <summary>Offset of the total size in the descriptor (u64).</summary>
    public const int DescriptorTotalSizeOffset = 16;   // u64
    /// <summary>Size of a chunk header {u32 id, u32 data length, 8 bytes}.</summary>
    public const int ChunkHeaderSize = 16;
    /// <summary>Offset of the chunk id (u32).</summary>
    public const int ChunkIdOffset = 0;                // u32
    /// <summary>Offset of the chunk's data length after the header (u32).</summary>
    public const int ChunkLengthOffset = 4;            // u32 data bytes after the header
    /// <summary>Chunk id: the prolog.</summary>
    public const uint ChunkProlog = 0x0000_0000;
    /// <summary>Chunk id: the epilog (end of the stream).</summary>
    public const uint ChunkEpilog = 0xF000_0000;
    /// <summary>Chunk id: the guest OS id.</summary>
    public const uint ChunkOsId = 0x2000_1000;
    /// <summary>Chunk id: the bitmap of virtual processor indices.</summary>
    public const uint ChunkVpIndices = 0x3000_0000;
    /// <summary>Chunk id: the marker that starts a virtual processor's chunks.</summary>
    public const uint ChunkVp = 0x3000_1000;
    /// <summary>Chunk id: general-purpose registers.</summary>
    public const uint ChunkGpRegisters = 0x3000_5000;
    /// <summary>Chunk id: control registers.</summary>
    public const uint ChunkControlRegisters = 0x3000_7000;
    /// <summary>Chunk id: a virtual trust level marker inside a virtual processor.</summary>
    public const uint ChunkVpVtl = 0x3001_A000;
    /// <summary>Size of the prolog chunk's data.</summary>
    public const int PrologSize = 4080;
    /// <summary>Tag at the start of the prolog data ("udTP").</summary>
    public const uint PrologTag = 0x5054_6475; // "udTP"
    /// <summary>Offset in the prolog chunk of the processor vendor (after header, tag, summary flag and padding).</summary>
    public const int PrologVendorOffset = 24;  // in the chunk, after header, tag, summary flag and padding
    /// <summary>Offset of the tag in the prolog data.</summary>
    public const int PrologTagOffset = 0;       // in the chunk data
    /// <summary>Processor vendor value for x64 (Intel and compatible).</summary>
    public const uint VendorIntel = 1;
    /// <summary>Processor vendor value for ARM64.</summary>
    public const uint VendorArm = 0x10;

    /// <summary>Size of the OS id chunk's data.</summary>
    public const int OsIdSize = 16;             // OS id chunk data
    /// <summary>Size of the VP indices chunk's data (4 bytes, then a bitmap).</summary>
    public const int VpIndicesSize = 48;        // VP indices chunk data: 4 bytes, then a bitmap of VP indices
    /// <summary>Offset of the bitmap in the VP indices data.</summary>
    public const int VpIndicesBitmapOffset = 4;
    /// <summary>Most virtual processors a blob may describe.</summary>
    public const int MaxVirtualProcessors = 240;
    /// <summary>Size of the VP marker chunk's data.</summary>
    public const int VpSize = 16;               // VP marker chunk data
    /// <summary>Offset of the virtual processor index in the VP marker data (u32).</summary>
    public const int VpIndexOffset = 0;         // u32
    /// <summary>Size of each register value in the register chunks (u64).</summary>
    public const int RegisterSize = 8;          // each register of the register chunks is a u64

    /// <summary>General-purpose register chunk: these u64 registers in order after the chunk header.</summary>
    public static readonly string[] GpRegisters =
        ["rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags"];

    /// <summary>Control register chunk: these u64 registers in order after the chunk header.</summary>
    public static readonly string[] ControlRegisters = ["cr0", "cr2", "cr3", "cr4", "cr8", "efer"];

    /// <summary>Reads the CPUs of a blob into <paramref name="metadata"/>; problems become warnings (memory does not depend on them).</summary>
    internal static void Read(ReadOnlySpan<byte> blob, CaptureMetadata metadata, ParserLimits limits)
    {
        if (blob.Length == 0)
        {
            return;
        }
        if (blob.Length < DescriptorSize)
        {
            metadata.Warnings.Add($"partition_state: {blob.Length} bytes cannot hold its descriptor; no CPU state read");
            return;
        }
        ulong headerSize = BinaryPrimitives.ReadUInt64LittleEndian(blob[DescriptorHeaderSizeOffset..]);
        if (headerSize > (ulong)blob.Length - ChunkHeaderSize)
        {
            metadata.Warnings.Add($"partition_state: chunk start 0x{headerSize:X}+0x10 is past the end of the {blob.Length}-byte blob; no CPU state read");
            return;
        }
        int pos = (int)headerSize + ChunkHeaderSize;
        List<KeyValuePair<string, ulong>>? registers = null;
        uint vpIndex = 0;
        int vtl = -1;
        bool arm = false;
        var cpus = new List<CpuState>();
        void Flush()
        {
            if (registers is { Count: > 0 } && cpus.Count < limits.MaxCpus)
            {
                string source = vtl >= 0 ? $"Hyper-V partition_state (VP {vpIndex}, VTL {vtl})" : $"Hyper-V partition_state (VP {vpIndex})";
                cpus.Add(new CpuState(cpus.Count, source, registers));
            }
            registers = null;
        }
        while (blob.Length - pos >= ChunkHeaderSize)
        {
            uint id = BinaryPrimitives.ReadUInt32LittleEndian(blob[(pos + ChunkIdOffset)..]);
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(blob[(pos + ChunkLengthOffset)..]);
            if (length > (uint)(blob.Length - pos - ChunkHeaderSize))
            {
                metadata.Warnings.Add($"partition_state: chunk 0x{id:X8} at blob offset 0x{pos:X} says {length} bytes but the blob ends first");
                break;
            }
            ReadOnlySpan<byte> data = blob.Slice(pos + ChunkHeaderSize, (int)length);
            switch (id)
            {
                case ChunkProlog when data.Length >= PrologVendorOffset - ChunkHeaderSize + 4:
                    arm = BinaryPrimitives.ReadUInt32LittleEndian(data[(PrologVendorOffset - ChunkHeaderSize)..]) == VendorArm;
                    break;
                case ChunkVp when data.Length >= VpIndexOffset + 4:
                    Flush();
                    vpIndex = BinaryPrimitives.ReadUInt32LittleEndian(data[VpIndexOffset..]);
                    vtl = -1;
                    break;
                case ChunkVpVtl when data.Length >= 1:
                    Flush();
                    vtl = data[0];
                    break;
                case ChunkGpRegisters when !arm:
                    Add(ref registers, GpRegisters, data);
                    break;
                case ChunkControlRegisters when !arm:
                    Add(ref registers, ControlRegisters, data);
                    break;
            }
            pos += ChunkHeaderSize + (int)length;
            if (id == ChunkEpilog)
            {
                break;
            }
        }
        Flush();
        if (arm)
        {
            metadata.Warnings.Add("partition_state: an Arm64 partition; its register chunks are not decoded");
        }
        metadata.Cpus.AddRange(cpus);
    }

    private static void Add(ref List<KeyValuePair<string, ulong>>? registers, string[] names, ReadOnlySpan<byte> data)
    {
        registers ??= [];
        for (int i = 0; i < names.Length && (i + 1) * RegisterSize <= data.Length; i++)
        {
            registers.Add(new(names[i], BinaryPrimitives.ReadUInt64LittleEndian(data[(i * RegisterSize)..])));
        }
    }
}
