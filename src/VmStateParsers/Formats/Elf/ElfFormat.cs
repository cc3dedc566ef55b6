using System.Buffers.Binary;
using System.Globalization;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Elf;

/// <summary>
/// ELF core files: Linux /proc/vmcore copies, QEMU dump-guest-memory, VirtualBox and Xen cores.
/// Each PT_LOAD maps [p_paddr, p_paddr + p_memsz); bytes past p_filesz read as zero.
/// </summary>
internal sealed class ElfFormat : CaptureFormat
{
    private const string FormatName = "ELF core";

    public override string Name => "elf";

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength)
        => head.Length >= ElfLayout.H32.Size && BinaryPrimitives.ReadUInt32LittleEndian(head) == ElfLayout.Magic
           ? FormatProbeResult.Match
           : FormatProbeResult.NoMatch;

    private readonly record struct Segment(int Index, ulong PAddr, ulong VAddr, ulong FileSize, ulong MemSize, long Offset);

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits)
    {
        ReadOnlySpan<byte> ident = file.Span(0, 16);
        byte elfClass = ident[ElfLayout.IdentClass];
        byte data = ident[ElfLayout.IdentData];
        if (elfClass is not (1 or 2))
        {
            throw Fail.At(FormatName, "e_ident.EI_CLASS", ElfLayout.IdentClass, $"class {elfClass} is neither 1 (32-bit) nor 2 (64-bit)");
        }
        if (data is not (1 or 2))
        {
            throw Fail.At(FormatName, "e_ident.EI_DATA", ElfLayout.IdentData, $"data encoding {data} is neither 1 (little-endian) nor 2 (big-endian)");
        }
        bool is64 = elfClass == 2;
        bool bigEndian = data == 2;
        int headerSize = is64 ? ElfLayout.H64.Size : ElfLayout.H32.Size;
        var header = new FieldReader(file.Span(0, (int)Math.Min(file.Length, headerSize)), 0, FormatName, "ELF header", bigEndian);
        ushort type = header.U16(ElfLayout.Type, "e_type");
        if (type != ElfLayout.EtCore)
        {
            throw header.Fail("e_type", ElfLayout.Type, $"type {type} is not ET_CORE (4): an ELF file, but not a memory core");
        }
        ushort machineCode = header.U16(ElfLayout.Machine, "e_machine");
        string machine = ElfLayout.MachineName(machineCode);
        ulong phOff = is64 ? header.U64(ElfLayout.H64.PhOff, "e_phoff") : header.U32(ElfLayout.H32.PhOff, "e_phoff");
        ulong shOff = is64 ? header.U64(ElfLayout.H64.ShOff, "e_shoff") : header.U32(ElfLayout.H32.ShOff, "e_shoff");
        int phEntSize = header.U16(is64 ? ElfLayout.H64.PhEntSize : ElfLayout.H32.PhEntSize, "e_phentsize");
        long phNum = header.U16(is64 ? ElfLayout.H64.PhNum : ElfLayout.H32.PhNum, "e_phnum");
        int minEntry = is64 ? ElfLayout.P64.Size : ElfLayout.P32.Size;
        if (phEntSize < minEntry)
        {
            throw header.Fail("e_phentsize", is64 ? ElfLayout.H64.PhEntSize : ElfLayout.H32.PhEntSize, $"{phEntSize} is smaller than a program header ({minEntry})");
        }
        if (phNum == ElfLayout.PnXnum)
        {
            phNum = ReadExtendedPhNum(file, header, is64, bigEndian, shOff);
        }
        if (phNum == 0)
        {
            throw header.Fail("e_phnum", is64 ? ElfLayout.H64.PhNum : ElfLayout.H32.PhNum, "no program headers: nothing describes memory");
        }
        if (phNum > limits.MaxProgramHeaders)
        {
            throw header.Fail("e_phnum", is64 ? ElfLayout.H64.PhNum : ElfLayout.H32.PhNum, $"{phNum} program headers is more than ParserLimits.MaxProgramHeaders ({limits.MaxProgramHeaders})");
        }
        if (phOff > (ulong)file.Length || (ulong)(phNum * phEntSize) > (ulong)file.Length - phOff)
        {
            throw header.Fail("e_phoff", is64 ? ElfLayout.H64.PhOff : ElfLayout.H32.PhOff, $"program header table 0x{phOff:X} + {phNum} x {phEntSize} runs past the end of the file (0x{file.Length:X})");
        }

        var metadata = new CaptureMetadata(FormatName);
        var loads = new List<Segment>();
        var notes = new List<(long Offset, int Size)>();
        long noteBytes = 0;
        for (int i = 0; i < phNum; i++)
        {
            long at = (long)phOff + (long)i * phEntSize;
            var ph = new FieldReader(file.Span(at, phEntSize), at, FormatName, $"program header[{i}]", bigEndian);
            uint pType = ph.U32(0, "p_type");
            ulong offset, vaddr, paddr, fileSize, memSize;
            if (is64)
            {
                offset = ph.U64(ElfLayout.P64.Offset, "p_offset");
                vaddr = ph.U64(ElfLayout.P64.VAddr, "p_vaddr");
                paddr = ph.U64(ElfLayout.P64.PAddr, "p_paddr");
                fileSize = ph.U64(ElfLayout.P64.FileSz, "p_filesz");
                memSize = ph.U64(ElfLayout.P64.MemSz, "p_memsz");
            }
            else
            {
                offset = ph.U32(ElfLayout.P32.Offset, "p_offset");
                vaddr = ph.U32(ElfLayout.P32.VAddr, "p_vaddr");
                paddr = ph.U32(ElfLayout.P32.PAddr, "p_paddr");
                fileSize = ph.U32(ElfLayout.P32.FileSz, "p_filesz");
                memSize = ph.U32(ElfLayout.P32.MemSz, "p_memsz");
            }
            if (pType == ElfLayout.PtNote)
            {
                if (offset > (ulong)file.Length || fileSize > (ulong)file.Length - offset)
                {
                    throw ph.Fail("p_offset", is64 ? ElfLayout.P64.Offset : ElfLayout.P32.Offset, $"note segment 0x{offset:X}+0x{fileSize:X} runs past the end of the file (0x{file.Length:X})");
                }
                noteBytes += (long)fileSize;
                if (noteBytes > limits.MaxNoteBytes)
                {
                    throw ph.Fail("p_filesz", is64 ? ElfLayout.P64.FileSz : ElfLayout.P32.FileSz, $"notes exceed ParserLimits.MaxNoteBytes ({limits.MaxNoteBytes})");
                }
                notes.Add(((long)offset, (int)fileSize));
            }
            else if (pType == ElfLayout.PtLoad && memSize > 0)
            {
                if (fileSize > memSize)
                {
                    throw ph.Fail("p_filesz", is64 ? ElfLayout.P64.FileSz : ElfLayout.P32.FileSz, $"p_filesz 0x{fileSize:X} is larger than p_memsz 0x{memSize:X}");
                }
                if (offset > long.MaxValue || fileSize > long.MaxValue)
                {
                    throw ph.Fail("p_offset", is64 ? ElfLayout.P64.Offset : ElfLayout.P32.Offset, $"p_offset 0x{offset:X} is not a valid file offset");
                }
                if (!is64 && paddr == uint.MaxValue || is64 && paddr == ulong.MaxValue)
                {
                    continue; // kcore segments without a physical address
                }
                loads.Add(new Segment(i, paddr, vaddr, fileSize, memSize, (long)offset));
            }
        }

        ElfNotes.Result noteResult = new();
        foreach ((long offset, int size) in notes)
        {
            ElfNotes.Result r = ElfNotes.Parse(file.Span(offset, size), offset, machine, bigEndian, metadata, limits, FormatName);
            noteResult.NoteCount += r.NoteCount;
            noteResult.HasQemuState |= r.HasQemuState;
            noteResult.HasVirtualBox |= r.HasVirtualBox;
            noteResult.HasXen |= r.HasXen;
            noteResult.PrstatusCount += r.PrstatusCount;
        }

        // Sort by physical address; where two segments overlap (vmcore's kernel-text alias of RAM), keep the first.
        loads.Sort((a, b) => a.PAddr != b.PAddr ? a.PAddr.CompareTo(b.PAddr) : a.Index.CompareTo(b.Index));
        var builder = new RunMapBuilder(FormatName, file.Length, limits);
        ulong covered = 0;
        int dropped = 0;
        foreach (Segment s in loads)
        {
            ulong start = s.PAddr;
            if (s.MemSize > limits.MaxPhysicalAddress || start > limits.MaxPhysicalAddress - s.MemSize)
            {
                throw Fail.At(FormatName, $"program header[{s.Index}].p_paddr", (long)phOff + (long)s.Index * phEntSize,
                    $"segment 0x{s.PAddr:X}+0x{s.MemSize:X} goes past the physical-address limit 0x{limits.MaxPhysicalAddress:X}");
            }
            ulong end = start + s.MemSize;
            if (end <= covered)
            {
                dropped++;
                continue;
            }
            ulong skip = covered > start ? covered - start : 0;
            long describedAt = (long)phOff + (long)s.Index * phEntSize;
            string name = $"program header[{s.Index}]";
            if (skip < s.FileSize)
            {
                builder.Add(new PhysicalRun(start + skip, s.FileSize - skip, s.Offset + (long)skip), name, describedAt);
            }
            ulong zeroFrom = Math.Max(skip, s.FileSize);
            if (zeroFrom < s.MemSize)
            {
                builder.Add(new PhysicalRun(start + zeroFrom, s.MemSize - zeroFrom, -1, RunStorage.Zero), name, describedAt);
            }
            covered = end;
        }

        string producer = noteResult.HasQemuState ? "QEMU dump-guest-memory"
            : noteResult.HasVirtualBox ? "VirtualBox"
            : noteResult.HasXen ? "Xen"
            : metadata.VmcoreInfo is not null ? "Linux kdump /proc/vmcore"
            : "unknown producer";
        metadata.Add("producer", producer);
        metadata.Add("class", is64 ? "ELF64" : "ELF32");
        metadata.Add("byteOrder", bigEndian ? "big-endian" : "little-endian");
        metadata.Add("machine", machine);
        metadata.Add("programHeaders", phNum.ToString(CultureInfo.InvariantCulture));
        metadata.Add("loadSegments", loads.Count.ToString(CultureInfo.InvariantCulture));
        metadata.Add("notes", noteResult.NoteCount.ToString(CultureInfo.InvariantCulture));
        if (dropped > 0)
        {
            metadata.Add("aliasSegmentsDropped", dropped.ToString(CultureInfo.InvariantCulture));
        }
        if (builder.TruncatedBytes > 0)
        {
            metadata.Warnings.Add($"file is truncated: 0x{builder.TruncatedBytes:X} bytes of PT_LOAD data lie past its end and read as holes");
        }
        return new ParsedCapture(file, builder.ToArray(), null, metadata);
    }

    private static long ReadExtendedPhNum(IByteSource file, FieldReader header, bool is64, bool bigEndian, ulong shOff)
    {
        int shEntSize = header.U16(is64 ? ElfLayout.H64.ShEntSize : ElfLayout.H32.ShEntSize, "e_shentsize");
        int needed = (is64 ? ElfLayout.H64.ShInfo : ElfLayout.H32.ShInfo) + 4;
        if (shOff == 0 || shEntSize < needed || shOff > (ulong)file.Length || (ulong)needed > (ulong)file.Length - shOff)
        {
            throw header.Fail("e_shoff", is64 ? ElfLayout.H64.ShOff : ElfLayout.H32.ShOff, "e_phnum is PN_XNUM but section header 0, which holds the real count, is missing or outside the file");
        }
        var section = new FieldReader(file.Span((long)shOff, needed), (long)shOff, FormatName, "section header[0]", bigEndian);
        return section.U32(is64 ? ElfLayout.H64.ShInfo : ElfLayout.H32.ShInfo, "sh_info");
    }
}
