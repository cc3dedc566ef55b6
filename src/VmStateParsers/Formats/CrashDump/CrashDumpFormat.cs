using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.CrashDump;

/// <summary>
/// Windows kernel crash dumps: 64-bit "PAGEDU64" and 32-bit "PAGEDUMP" headers; full dumps (runs from the
/// PHYSICAL_MEMORY_DESCRIPTOR, pages back to back after the header) and bitmap dumps (SDMP/FDMP header, one bit per
/// PFN, stored pages packed in bitmap order). Pages are stored as-is, so every run is direct (zero-copy).
/// </summary>
internal sealed class CrashDumpFormat : CaptureFormat
{
    private const string FormatName = "crash dump";
    private const int Page = CrashDumpLayout.PageSize;

    /// <summary>The format's short name (also what its writer is verified as).</summary>
    public const string Id = "crashdump";

    public override string Name => Id;

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength)
    {
        if (head.Length < 8 || BinaryPrimitives.ReadUInt32LittleEndian(head) != CrashDumpLayout.Signature)
        {
            return FormatProbeResult.NoMatch;
        }
        uint valid = BinaryPrimitives.ReadUInt32LittleEndian(head[CrashDumpLayout.ValidDumpOffset..]);
        return valid is CrashDumpLayout.ValidDump64 or CrashDumpLayout.ValidDump32 ? FormatProbeResult.Match : FormatProbeResult.NoMatch;
    }

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits)
    {
        ReadOnlySpan<byte> magic = file.Span(0, (int)Math.Min(file.Length, 8));
        var probe = new FieldReader(magic, 0, FormatName, "DUMP_HEADER");
        uint signature = probe.U32(CrashDumpLayout.SignatureOffset, "Signature");
        uint validDump = probe.U32(CrashDumpLayout.ValidDumpOffset, "ValidDump");
        if (signature != CrashDumpLayout.Signature || validDump is not (CrashDumpLayout.ValidDump64 or CrashDumpLayout.ValidDump32))
        {
            throw probe.Fail("Signature", 0, $"0x{signature:X8} 0x{validDump:X8} is not \"PAGEDU64\" or \"PAGEDUMP\"");
        }
        CrashDumpLayout.HeaderShape shape = validDump == CrashDumpLayout.ValidDump64 ? CrashDumpLayout.HeaderShape.Dump64 : CrashDumpLayout.HeaderShape.Dump32;
        int headerSize = shape.Size;
        string structure = shape.Structure;
        if (file.Length < headerSize)
        {
            throw Fail.At(FormatName, structure, 0, $"the header needs 0x{headerSize:X} bytes but the file has only 0x{file.Length:X} (truncated)");
        }
        var header = new FieldReader(file.Span(0, headerSize), 0, FormatName, structure);
        uint dumpTypeValue = header.U32(shape.DumpType, "DumpType");
        bool pae = !shape.Is64 && header.U8(CrashDumpLayout.H32.PaeEnabled, "PaeEnabled") == 1;
        string bits = shape.Is64 ? "64-bit" : pae ? "32-bit PAE" : "32-bit";
        string kind = dumpTypeValue switch { 1 => "full", 2 or 5 or 6 or 7 => "bitmap", _ => CrashDumpLayout.DumpTypeName(dumpTypeValue) };
        var metadata = new CaptureMetadata($"Windows crash dump ({bits}, {kind})");
        HeaderFields fields = ReadHeader(header, shape, metadata);

        var builder = new RunMapBuilder(FormatName, file.Length, limits);
        ulong missingPages;
        switch (fields.DumpType)
        {
            case 1:
                missingPages = FullRuns(header, shape, file.Length, limits, builder, metadata);
                break;
            case 2 or 5 or 6 or 7:
                missingPages = BitmapRuns(file, headerSize, limits, builder, metadata);
                break;
            case 3 or 4:
                throw header.Fail("DumpType", fields.DumpTypeOffset, $"dump type {fields.DumpType} ({CrashDumpLayout.DumpTypeName(fields.DumpType)}) holds no physical memory image");
            case 8 or 9 or 10:
                throw header.Fail("DumpType", fields.DumpTypeOffset, $"dump type {fields.DumpType} ({CrashDumpLayout.DumpTypeName(fields.DumpType)}, \"RDMP\" range list) is not supported yet");
            default:
                throw header.Fail("DumpType", fields.DumpTypeOffset, $"unknown dump type {fields.DumpType}");
        }

        ulong missingBytes = builder.TruncatedBytes + missingPages * Page;
        if (missingBytes > 0)
        {
            metadata.Warnings.Add($"file is truncated: 0x{missingBytes:X} bytes of stored pages lie past its end (0x{file.Length:X}) and read as holes");
        }
        if (fields.RequiredDumpSpace != CrashDumpLayout.FillPattern64 && fields.RequiredDumpSpace > (ulong)file.Length)
        {
            metadata.Warnings.Add($"the file (0x{file.Length:X} bytes) is shorter than the header's RequiredDumpSpace (0x{fields.RequiredDumpSpace:X})");
        }
        if (builder.Count == 0)
        {
            throw Fail.At(FormatName, structure, 0, "no stored page lies within the file (truncated after the headers?)");
        }
        if (fields.DirectoryTableBase != 0 && fields.DirectoryTableBase != CrashDumpLayout.FillPattern64)
        {
            metadata.Cpus.Add(new CpuState(0, "crash dump header DirectoryTableBase (kernel page-table root)", [new("cr3", fields.DirectoryTableBase)]));
        }
        return new ParsedCapture(file, builder.ToArray(), null, metadata);
    }

    private readonly record struct HeaderFields(uint DumpType, int DumpTypeOffset, ulong DirectoryTableBase, ulong RequiredDumpSpace);

    private static HeaderFields ReadHeader(FieldReader h, CrashDumpLayout.HeaderShape l, CaptureMetadata m)
    {
        m.Add("Signature", l.SignatureText);
        AddVersion(h, m);
        ulong dtb = Pointer(h, l, l.DirectoryTableBase, "DirectoryTableBase");
        m.Add("DirectoryTableBase", HexPointer(l, dtb));
        m.Add("PfnDataBase", HexPointer(l, Pointer(h, l, l.PfnDataBase, "PfnDataBase")));
        m.Add("PsLoadedModuleList", HexPointer(l, Pointer(h, l, l.PsLoadedModuleList, "PsLoadedModuleList")));
        m.Add("PsActiveProcessHead", HexPointer(l, Pointer(h, l, l.PsActiveProcessHead, "PsActiveProcessHead")));
        AddMachine(h, m, l.MachineImageType, l.NumberProcessors);
        m.Add("BugCheckCode", Hex32(h.U32(l.BugCheckCode, "BugCheckCode")));
        for (int i = 0; i < CrashDumpLayout.BugCheckParameterCount; i++)
        {
            string name = $"BugCheckParameter{i + 1}";
            m.Add(name, HexPointer(l, Pointer(h, l, l.BugCheckParameters + l.PointerSize * i, name)));
        }
        if (!l.Is64)
        {
            byte pae = h.U8(CrashDumpLayout.H32.PaeEnabled, "PaeEnabled");
            m.Add("PaeEnabled", pae switch { 0 => "no", 1 => "yes", _ => $"0x{pae:X2}" });
        }
        m.Add("KdDebuggerDataBlock", HexPointer(l, Pointer(h, l, l.KdDebuggerDataBlock, "KdDebuggerDataBlock")));
        uint dumpType = h.U32(l.DumpType, "DumpType");
        m.Add("DumpType", $"{dumpType} ({CrashDumpLayout.DumpTypeName(dumpType)})");
        ulong required = h.U64(l.RequiredDumpSpace, "RequiredDumpSpace");
        m.Add("RequiredDumpSpace", required == CrashDumpLayout.FillPattern64 ? Unset : required.ToString(CultureInfo.InvariantCulture));
        m.Add("SystemTime", FileTime(h.U64(l.SystemTime, "SystemTime")));
        AddComment(h, m, l.Comment);
        // A 32-bit DirectoryTableBase of "PAGE" fill is no table; the 64-bit fill is tested where CR3 is recorded.
        ulong root = !l.Is64 && dtb == CrashDumpLayout.FillPattern32 ? 0 : dtb;
        return new HeaderFields(dumpType, l.DumpType, root, required);
    }

    /// <summary>A pointer-sized field: u64 in the 64-bit header, u32 in the 32-bit one.</summary>
    private static ulong Pointer(FieldReader h, CrashDumpLayout.HeaderShape l, int at, string name)
        => l.Is64 ? h.U64(at, name) : h.U32(at, name);

    private static string HexPointer(CrashDumpLayout.HeaderShape l, ulong value) => l.Is64 ? Hex64(value) : Hex32((uint)value);

    /// <summary>Type 1: runs from the PHYSICAL_MEMORY_DESCRIPTOR; pages back to back from the end of the header.</summary>
    /// <returns>Pages of runs that start past the end of the file.</returns>
    private static ulong FullRuns(FieldReader h, CrashDumpLayout.HeaderShape l, long fileLength, ParserLimits limits, RunMapBuilder builder, CaptureMetadata m)
    {
        int block = l.PhysicalMemoryBlock;
        int runsAt = block + l.Runs;
        int runSize = l.RunSize;
        int inBuffer = l.RunsInBuffer;
        uint runCount = h.U32(block + CrashDumpLayout.H64.NumberOfRuns, "PhysicalMemoryBlock.NumberOfRuns");   // offset 0 in both widths
        ulong pageCount = Pointer(h, l, block + l.NumberOfPages, "PhysicalMemoryBlock.NumberOfPages");
        if (runCount == CrashDumpLayout.FillPattern32)
        {
            throw h.Fail("PhysicalMemoryBlock.NumberOfRuns", block, "is the \"PAGE\" fill pattern: the header of this full dump has no run list");
        }
        if (runCount == 0)
        {
            throw h.Fail("PhysicalMemoryBlock.NumberOfRuns", block, "a full dump with no runs");
        }
        if (runCount > (uint)limits.MaxCrashDumpRuns)
        {
            throw h.Fail("PhysicalMemoryBlock.NumberOfRuns", block, $"{runCount} runs is more than ParserLimits.MaxCrashDumpRuns ({limits.MaxCrashDumpRuns})");
        }
        if ((long)runsAt + (long)runCount * runSize > h.Length)
        {
            throw h.Fail("PhysicalMemoryBlock.NumberOfRuns", block, $"{runCount} runs of {runSize} bytes at 0x{runsAt:X} go past the end of the 0x{h.Length:X}-byte header");
        }
        if (runCount > inBuffer)
        {
            m.Warnings.Add($"the run list ({runCount} runs) is longer than the 700-byte PhysicalMemoryBlockBuffer holds ({inBuffer}) and overlaps the ContextRecord");
        }
        m.Add("NumberOfRuns", runCount.ToString(CultureInfo.InvariantCulture));
        m.Add("NumberOfPages", pageCount.ToString(CultureInfo.InvariantCulture));
        ulong maxPfn = limits.MaxPhysicalAddress / Page;
        long dataOffset = h.Length;
        ulong sum = 0;
        ulong missing = 0;
        for (int i = 0; i < (int)runCount; i++)
        {
            int at = runsAt + i * runSize;
            string name = $"PhysicalMemoryBlock.Run[{i}]";
            ulong basePage = Pointer(h, l, at, name + ".BasePage");
            ulong pages = Pointer(h, l, at + l.RunPageCount, name + ".PageCount");
            if (basePage > maxPfn || pages > maxPfn - basePage)
            {
                throw h.Fail(name, at, $"pages 0x{basePage:X}+0x{pages:X} go past the physical-address limit 0x{limits.MaxPhysicalAddress:X}");
            }
            if (dataOffset >= fileLength)
            {
                missing += pages;
            }
            else
            {
                builder.Add(new PhysicalRun(basePage * Page, pages * Page, dataOffset), $"{h.Structure}.{name}", at);
            }
            dataOffset += (long)(pages * Page);
            sum += pages;
        }
        if (sum != pageCount)
        {
            m.Warnings.Add($"PhysicalMemoryBlock.NumberOfPages is {pageCount} but the runs add up to {sum} pages");
        }
        return missing;
    }

    /// <summary>Types 2/5/6/7: the bitmap header after the main header; stored pages packed in PFN order from FirstPage.</summary>
    /// <returns>Pages whose data would start past the end of the file.</returns>
    private static ulong BitmapRuns(IByteSource file, int at, ParserLimits limits, RunMapBuilder builder, CaptureMetadata m)
    {
        const string Structure = "bitmap header";
        if (file.Length - at < CrashDumpLayout.Bitmap.HeaderSize)
        {
            throw Fail.At(FormatName, Structure, at, $"needs 0x{CrashDumpLayout.Bitmap.HeaderSize:X} bytes but the file has only 0x{Math.Max(0, file.Length - at):X} here (truncated)");
        }
        var b = new FieldReader(file.Span(at, CrashDumpLayout.Bitmap.HeaderSize), at, FormatName, Structure);
        uint signature = b.U32(CrashDumpLayout.Bitmap.SignatureOffset, "Signature");
        if (signature == CrashDumpLayout.Bitmap.RangeSignature)
        {
            throw b.Fail("Signature", 0, "\"RDMP\" range-list dumps are not supported yet");
        }
        if (signature is not (CrashDumpLayout.Bitmap.SummarySignature or CrashDumpLayout.Bitmap.FullSignature))
        {
            throw b.Fail("Signature", 0, $"0x{signature:X8} is not \"SDMP\" or \"FDMP\" (the DumpType says bitmap dump)");
        }
        uint valid = b.U32(CrashDumpLayout.Bitmap.ValidDumpOffset, "ValidDump");
        if (valid != CrashDumpLayout.Bitmap.ValidDump)
        {
            throw b.Fail("ValidDump", CrashDumpLayout.Bitmap.ValidDumpOffset, $"0x{valid:X8} is not \"DUMP\"");
        }
        ulong firstPage = b.U64(CrashDumpLayout.Bitmap.FirstPage, "FirstPage");
        ulong present = b.U64(CrashDumpLayout.Bitmap.TotalPresentPages, "TotalPresentPages");
        ulong bits = b.U64(CrashDumpLayout.Bitmap.Pages, "Pages");
        if (bits > limits.MaxCrashDumpBitmapPages)
        {
            throw b.Fail("Pages", CrashDumpLayout.Bitmap.Pages, $"a bitmap of {bits} pages is more than ParserLimits.MaxCrashDumpBitmapPages ({limits.MaxCrashDumpBitmapPages})");
        }
        if (bits > limits.MaxPhysicalAddress / Page)
        {
            throw b.Fail("Pages", CrashDumpLayout.Bitmap.Pages, $"{bits} pages go past the physical-address limit 0x{limits.MaxPhysicalAddress:X}");
        }
        long bitmapAt = at + CrashDumpLayout.Bitmap.Bits;
        ulong bitmapBytes = (bits + 7) / 8;
        if (bitmapBytes > (ulong)(file.Length - bitmapAt))
        {
            throw b.Fail("Pages", CrashDumpLayout.Bitmap.Pages, $"a bitmap of {bits} bits (0x{bitmapBytes:X} bytes) at 0x{bitmapAt:X} runs past the end of the file (0x{file.Length:X})");
        }
        long bitmapEnd = bitmapAt + (long)bitmapBytes;
        if (firstPage < (ulong)bitmapEnd || firstPage > (ulong)file.Length)
        {
            throw b.Fail("FirstPage", CrashDumpLayout.Bitmap.FirstPage, $"page data at 0x{firstPage:X} is not between the end of the bitmap (0x{bitmapEnd:X}) and the end of the file (0x{file.Length:X})");
        }
        if (present > bits)
        {
            throw b.Fail("TotalPresentPages", CrashDumpLayout.Bitmap.TotalPresentPages, $"{present} present pages is more than the bitmap's {bits} bits");
        }
        string signatureText = signature == CrashDumpLayout.Bitmap.FullSignature ? "FDMP" : "SDMP";
        m.Add("BitmapSignature", signatureText);
        m.Add("FirstPage", $"0x{firstPage:X}");
        m.Add("TotalPresentPages", present.ToString(CultureInfo.InvariantCulture));
        m.Add("BitmapPages", bits.ToString(CultureInfo.InvariantCulture));

        var walk = new BitmapWalk(builder, (long)firstPage, file.Length, bitmapAt);
        const int chunkBytes = 1 << 20;
        Span<byte> tail = stackalloc byte[8];
        for (ulong offset = 0; offset < bitmapBytes; offset += chunkBytes)
        {
            int count = (int)Math.Min(chunkBytes, bitmapBytes - offset);
            ReadOnlySpan<byte> chunk = file.Span(bitmapAt + (long)offset, count);
            int words = count / 8;
            for (int w = 0; w < words; w++)
            {
                ulong firstPfn = offset * 8 + (ulong)w * 64;
                walk.Word(firstPfn, BinaryPrimitives.ReadUInt64LittleEndian(chunk[(w * 8)..]), (int)Math.Min(64, bits - firstPfn));
            }
            if (count % 8 != 0)
            {
                tail.Clear();
                chunk[(words * 8)..].CopyTo(tail);
                ulong firstPfn = offset * 8 + (ulong)words * 64;
                walk.Word(firstPfn, BinaryPrimitives.ReadUInt64LittleEndian(tail), (int)Math.Min(64, bits - firstPfn));
            }
        }
        walk.Flush();
        if (walk.Stored != present)
        {
            m.Warnings.Add($"TotalPresentPages is {present} but the bitmap sets {walk.Stored} bits");
        }
        m.Add("storedPages", walk.Stored.ToString(CultureInfo.InvariantCulture));
        return walk.MissingPages;
    }

    /// <summary>Turns bitmap words into runs of consecutive set bits; the k-th set bit is the k-th stored page.</summary>
    private sealed class BitmapWalk(RunMapBuilder builder, long firstPage, long fileLength, long bitmapAt)
    {
        private ulong _runStart;
        private ulong _runPages;

        public ulong Stored { get; private set; }
        public ulong MissingPages { get; private set; }

        /// <summary>Takes the next <paramref name="width"/> (1..64) bits; higher bits of the word are not PFNs of the dump.</summary>
        public void Word(ulong firstPfn, ulong word, int width)
        {
            if (width < 64)
            {
                word &= (1UL << width) - 1;
            }
            if (word == ulong.MaxValue)
            {
                if (_runPages == 0)
                {
                    _runStart = firstPfn;
                }
                _runPages += (ulong)width;
                return;
            }
            int bit = 0;
            while (bit < width)
            {
                ulong rest = word >> bit;
                if (rest == 0)
                {
                    Flush();
                    return;
                }
                if ((rest & 1) == 0)
                {
                    Flush();
                    bit += BitOperations.TrailingZeroCount(rest);
                    continue;
                }
                int ones = BitOperations.TrailingZeroCount(~rest);
                if (_runPages == 0)
                {
                    _runStart = firstPfn + (ulong)bit;
                }
                _runPages += (ulong)ones;
                bit += ones;
            }
        }

        public void Flush()
        {
            if (_runPages == 0)
            {
                return;
            }
            ulong pages = _runPages;
            _runPages = 0;
            ulong dataOffset = (ulong)firstPage + Stored * CrashDumpLayout.PageSize;
            Stored += pages;
            if (dataOffset >= (ulong)fileLength)
            {
                MissingPages += pages;
                return;
            }
            builder.Add(new PhysicalRun(_runStart * CrashDumpLayout.PageSize, pages * CrashDumpLayout.PageSize, (long)dataOffset),
                "bitmap", bitmapAt + (long)(_runStart / 8));
        }
    }

    private const string Unset = "not set (\"PAGE\" fill)";

    private static string Hex64(ulong value) => value == CrashDumpLayout.FillPattern64 ? Unset : $"0x{value:X}";

    private static string Hex32(uint value) => value == CrashDumpLayout.FillPattern32 ? Unset : $"0x{value:X}";

    private static void AddVersion(FieldReader h, CaptureMetadata m)
    {
        uint major = h.U32(CrashDumpLayout.MajorVersionOffset, "MajorVersion");
        uint minor = h.U32(CrashDumpLayout.MinorVersionOffset, "MinorVersion");
        m.Add("MajorVersion", major switch
        {
            CrashDumpLayout.MajorVersionFree => "0xF (free build)",
            CrashDumpLayout.MajorVersionChecked => "0xC (checked build)",
            _ => Hex32(major),
        });
        m.Add("MinorVersion", minor == CrashDumpLayout.FillPattern32 ? Unset : $"{minor} (NT build number)");
    }

    private static void AddMachine(FieldReader h, CaptureMetadata m, int machineAt, int processorsAt)
    {
        uint machine = h.U32(machineAt, "MachineImageType");
        m.Add("MachineImageType", machine == CrashDumpLayout.FillPattern32 ? Unset : $"0x{machine:X} ({CrashDumpLayout.MachineName(machine)})");
        uint processors = h.U32(processorsAt, "NumberProcessors");
        m.Add("NumberProcessors", processors == CrashDumpLayout.FillPattern32 ? Unset : processors.ToString(CultureInfo.InvariantCulture));
    }

    private static void AddComment(FieldReader h, CaptureMetadata m, int at)
    {
        ReadOnlySpan<byte> raw = h.Bytes(at, CrashDumpLayout.CommentSize, "Comment");
        if (raw.StartsWith("PAGE"u8) || raw[0] == 0)
        {
            return;
        }
        string text = h.FixedString(at, CrashDumpLayout.CommentSize, "Comment");
        if (text.All(c => c >= ' ' && c < 0x7F))
        {
            m.Add("Comment", text);
        }
    }

    /// <summary>A FILETIME (100 ns ticks since 1601-01-01 UTC) as ISO 8601, or the raw value when it is not plausible.</summary>
    private static string FileTime(ulong value)
    {
        if (value == CrashDumpLayout.FillPattern64)
        {
            return Unset;
        }
        if (value == 0)
        {
            return "0 (not set)";
        }
        const long MaxTicks = 2650467743999999999;   // 9999-12-31 as a FILETIME
        return value < MaxTicks
            ? DateTime.FromFileTimeUtc((long)value).ToString("yyyy-MM-dd HH:mm:ss.fffffff'Z'", CultureInfo.InvariantCulture)
            : $"0x{value:X}";
    }
}
