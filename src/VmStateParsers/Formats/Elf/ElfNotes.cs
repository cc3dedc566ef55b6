using System.Buffers.Binary;
using System.Text;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Elf;

/// <summary>
/// Parses an ELF note blob (Linux core notes: 4-byte aligned name and descriptor) into capture metadata:
/// VMCOREINFO, per-CPU NT_PRSTATUS registers, QEMU's per-CPU state with control registers, VirtualBox markers.
/// Shared by ELF cores and compressed kdump files, which embed the same blob.
/// </summary>
internal static class ElfNotes
{
    private const uint NtPrstatus = 1;

    // Registers in the order the kernel's elf_prstatus.pr_reg stores them, per architecture.
    private static readonly string[] s_x64 =
    [
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
        "orig_rax", "rip", "cs", "rflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs", "gs",
    ];
    private static readonly string[] s_i386 =
    [
        "ebx", "ecx", "edx", "esi", "edi", "ebp", "eax", "ds", "es", "fs", "gs", "orig_eax", "eip", "cs", "eflags", "esp", "ss",
    ];
    private static readonly string[] s_arm =
    [
        "r0", "r1", "r2", "r3", "r4", "r5", "r6", "r7", "r8", "r9", "r10", "fp", "ip", "sp", "lr", "pc", "cpsr", "orig_r0",
    ];
    private static readonly string[] s_qemuGeneral =
    [
        "rax", "rbx", "rcx", "rdx", "rsi", "rdi", "rsp", "rbp", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip", "rflags",
    ];

    /// <summary>What the notes said.</summary>
    public sealed class Result
    {
        public int NoteCount;
        public bool HasQemuState;
        public bool HasVirtualBox;
        public bool HasXen;
        public int PrstatusCount;
    }

    /// <summary>Parses <paramref name="blob"/> found at <paramref name="fileOffset"/>.</summary>
    public static Result Parse(ReadOnlySpan<byte> blob, long fileOffset, string machine, bool bigEndian, CaptureMetadata metadata, ParserLimits limits, string format)
    {
        var result = new Result();
        int position = 0;
        int qemuIndex = 0;
        while (position + 12 <= blob.Length)
        {
            uint nameSize = ReadU32(blob[position..], bigEndian);
            uint descSize = ReadU32(blob[(position + 4)..], bigEndian);
            uint type = ReadU32(blob[(position + 8)..], bigEndian);
            if (nameSize == 0 && descSize == 0 && type == 0)
            {
                break; // padding at the end of a note segment
            }
            long nameStart = position + 12L;
            long descStart = nameStart + Align4(nameSize);
            long next = descStart + Align4(descSize);
            if (nameSize > blob.Length || descSize > blob.Length || next > blob.Length)
            {
                throw Fail.At(format, $"note[{result.NoteCount}]", fileOffset + position,
                    $"name size {nameSize} and descriptor size {descSize} run past the end of the note data ({blob.Length} bytes)");
            }
            if (++result.NoteCount > limits.MaxNotes)
            {
                throw Fail.At(format, $"note[{result.NoteCount - 1}]", fileOffset + position, $"more than {limits.MaxNotes} notes (ParserLimits.MaxNotes)");
            }
            ReadOnlySpan<byte> nameBytes = blob.Slice((int)nameStart, (int)nameSize);
            int nul = nameBytes.IndexOf((byte)0);
            string name = Encoding.ASCII.GetString(nul >= 0 ? nameBytes[..nul] : nameBytes);
            ReadOnlySpan<byte> desc = blob.Slice((int)descStart, (int)descSize);
            switch (name)
            {
                case "VMCOREINFO":
                    if (desc.Length > limits.MaxVmcoreInfoBytes)
                    {
                        throw Fail.At(format, "VMCOREINFO note", fileOffset + descStart, $"{desc.Length} bytes is more than ParserLimits.MaxVmcoreInfoBytes");
                    }
                    metadata.VmcoreInfo ??= VmcoreInfo.Parse(desc);
                    break;
                case "CORE" when type == NtPrstatus:
                    AddPrstatus(desc, machine, bigEndian, metadata, limits, result);
                    break;
                case "QEMU":
                    AddQemuState(desc, qemuIndex++, metadata, limits, result);
                    break;
                case "VBCORE":
                case "VBCPU":
                    result.HasVirtualBox = true;
                    break;
                case "Xen":
                    result.HasXen = true;
                    break;
            }
            position = (int)next;
        }
        return result;
    }

    private static void AddPrstatus(ReadOnlySpan<byte> desc, string machine, bool bigEndian, CaptureMetadata metadata, ParserLimits limits, Result result)
    {
        (string[]? names, int pidOffset, int regOffset, int width) = machine switch
        {
            "x86_64" => (s_x64, 32, 112, 8),
            "i386" or "i686" or "i586" => (s_i386, 24, 72, 4),
            "arm" or "armv7l" or "armv6l" => (s_arm, 24, 72, 4),
            "aarch64" => (BuildAarch64(), 32, 112, 8),
            _ => (null, 0, 0, 0),
        };
        result.PrstatusCount++;
        if (names is null || metadata.Cpus.Count >= limits.MaxCpus || desc.Length < regOffset + names.Length * width)
        {
            return;
        }
        var registers = new List<KeyValuePair<string, ulong>> { new("pid", ReadU32(desc[pidOffset..], bigEndian)) };
        for (int i = 0; i < names.Length; i++)
        {
            ReadOnlySpan<byte> at = desc[(regOffset + i * width)..];
            ulong value = width == 8 ? ReadU64(at, bigEndian) : ReadU32(at, bigEndian);
            registers.Add(new(names[i], value));
        }
        metadata.Cpus.Add(new CpuState(metadata.Cpus.Count, "NT_PRSTATUS", registers));
    }

    private static string[] BuildAarch64()
    {
        var names = new string[34];
        for (int i = 0; i < 31; i++)
        {
            names[i] = $"x{i}";
        }
        names[31] = "sp";
        names[32] = "pc";
        names[33] = "pstate";
        return names;
    }

    // QEMU's x86 QEMUCPUState: version, size, 16 GPRs, rip, rflags, 6 segments, ldt/tr/gdt/idt, cr0..cr4, kernel_gs_base.
    private static void AddQemuState(ReadOnlySpan<byte> desc, int index, CaptureMetadata metadata, ParserLimits limits, Result result)
    {
        const int generalOffset = 0x08;
        const int segmentsOffset = 0x98;
        const int crOffset = 0x188;
        const int kernelGsBaseOffset = 0x1B0;
        if (desc.Length < crOffset + 5 * 8)
        {
            return;
        }
        result.HasQemuState = true;
        var registers = new List<KeyValuePair<string, ulong>>();
        for (int i = 0; i < s_qemuGeneral.Length; i++)
        {
            registers.Add(new(s_qemuGeneral[i], BinaryPrimitives.ReadUInt64LittleEndian(desc[(generalOffset + i * 8)..])));
        }
        string[] segments = ["cs", "ds", "es", "fs", "gs", "ss"];
        for (int i = 0; i < segments.Length; i++)
        {
            int at = segmentsOffset + i * 24;
            registers.Add(new(segments[i], BinaryPrimitives.ReadUInt32LittleEndian(desc[at..])));
            registers.Add(new(segments[i] + "_base", BinaryPrimitives.ReadUInt64LittleEndian(desc[(at + 16)..])));
        }
        for (int i = 0; i < 5; i++)
        {
            registers.Add(new($"cr{i}", BinaryPrimitives.ReadUInt64LittleEndian(desc[(crOffset + i * 8)..])));
        }
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(desc[4..]);
        if (size >= kernelGsBaseOffset + 8 && desc.Length >= kernelGsBaseOffset + 8)
        {
            registers.Add(new("kernel_gs_base", BinaryPrimitives.ReadUInt64LittleEndian(desc[kernelGsBaseOffset..])));
        }
        if (metadata.Cpus.Count < limits.MaxCpus)
        {
            metadata.Cpus.Add(new CpuState(index, "QEMU CPU state", registers));
        }
    }

    private static long Align4(uint value) => (value + 3L) & ~3L;

    private static uint ReadU32(ReadOnlySpan<byte> span, bool bigEndian)
        => bigEndian ? BinaryPrimitives.ReadUInt32BigEndian(span) : BinaryPrimitives.ReadUInt32LittleEndian(span);

    private static ulong ReadU64(ReadOnlySpan<byte> span, bool bigEndian)
        => bigEndian ? BinaryPrimitives.ReadUInt64BigEndian(span) : BinaryPrimitives.ReadUInt64LittleEndian(span);
}
