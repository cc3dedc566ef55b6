using System.Buffers.Binary;
using System.Text;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.VmStateParsers.Formats.CrashDump;

/// <summary>
/// Windows 64-bit crash dump ("PAGEDU64", formats.md section 3). Variant <c>full</c> (DumpType 1): the runs go in the
/// header's PHYSICAL_MEMORY_DESCRIPTOR and the pages follow the 0x2000-byte header back to back. Variant
/// <c>bitmap</c> (DumpType 5): an "FDMP" bitmap header at 0x2000 with one bit per page frame, then the stored pages
/// packed in frame order from a page-aligned offset. Header fields this tool cannot know keep the "PAGE" fill that
/// Windows leaves in unused fields; the ones it knows (signature, versions, machine, DirectoryTableBase, runs, dump
/// type, size) are filled as Windows does, so WinDbg, Volatility 3 (layers/crash.py) and kdmp-parser accept the file.
/// </summary>
/// <remarks>Runs are widened to whole 4 KiB pages (a crash dump stores pages); the widening reads as zero.</remarks>
public sealed class DmpWriter : ICaptureWriter
{
    private const int PageSize = CrashDumpLayout.PageSize;
    private const int HeaderSize = CrashDumpLayout.H64.Size;

    /// <summary>Runs that fit the 700-byte PhysicalMemoryBlockBuffer (what Windows and its readers expect).</summary>
    public const int MaxFullRuns = CrashDumpLayout.H64.RunsInBuffer;

    /// <inheritdoc />
    public string Name => "dmp";

    /// <inheritdoc />
    public string Description => "Windows 64-bit crash dump (full: DumpType 1 with a run list; bitmap: DumpType 5, FDMP bitmap)";

    /// <inheritdoc />
    public IReadOnlyList<string> Variants => ["full", "bitmap"];

    /// <inheritdoc />
    public string? VerifyAs => CrashDumpFormat.Id;

    /// <summary>One run of whole pages in the output and where its first page goes in the file.</summary>
    private readonly record struct PageRun(ulong FirstPfn, ulong Pages, long FileOffset)
    {
        public ulong Start => FirstPfn * PageSize;
        public ulong End => (FirstPfn + Pages) * PageSize;
    }

    /// <inheritdoc />
    public WriterStatistics Write(IPhysicalMemory memory, WriterContext context)
    {
        bool bitmap = string.Equals(context.Variant, "bitmap", StringComparison.OrdinalIgnoreCase);
        List<PageRange> spans = PageRanges.Widen(memory.Runs, PageSize, out ulong paddingBytes);
        if (spans.Count == 0)
        {
            throw new ConvertException("dmp: the capture holds no memory to write");
        }
        if (!bitmap && spans.Count > MaxFullRuns)
        {
            throw new ConvertException($"dmp full: {spans.Count} runs do not fit the header's run list ({MaxFullRuns} at most); use --variant bitmap");
        }
        ulong totalPages = 0;
        foreach (PageRange span in spans)
        {
            totalPages += span.Pages(PageSize);
        }
        ulong bitmapPages = spans[^1].End / PageSize;
        // The bitmap is padded to whole 32-bit words (Volatility reads it as u32s) and the pages start on a page boundary.
        long bitmapBytes = bitmap ? (long)((bitmapPages + 31) / 32 * 4) : 0;
        long dataStart = bitmap ? AlignUp(HeaderSize + CrashDumpLayout.Bitmap.Bits + bitmapBytes) : HeaderSize;
        long fileLength = dataStart + (long)(totalPages * PageSize);

        var runs = new List<PageRun>(spans.Count);
        long next = dataStart;
        foreach (PageRange span in spans)
        {
            runs.Add(new PageRun(span.FirstPage(PageSize), span.Pages(PageSize), next));
            next += (long)span.Length;
        }

        ulong dtb = FindDirectoryTableBase(memory, context, out string dtbSource);
        string sourceFormat = memory is ICaptureMetadata m ? m.Metadata.Format : "unknown format";
        byte[] header = Header(runs, bitmap, totalPages, (ulong)fileLength, dtb, $"CloudMem convert from {sourceFormat}; DirectoryTableBase: {dtbSource}");

        OutputFile file = context.CreateMain();
        file.Write(header);
        if (bitmap)
        {
            WriteBitmap(file, runs, bitmapPages, totalPages, dataStart);
        }
        if (paddingBytes > 0)
        {
            context.Notes.Add($"runs widened to whole pages: {paddingBytes} bytes that the source does not hold read as zero in the dump");
        }

        int index = 0;
        ulong written = 0;
        ulong unreadable = SequentialReader.ForEachBlock(memory, (pa, data) =>
        {
            while (pa >= runs[index].End)
            {
                index++;
            }
            file.WriteAt(runs[index].FileOffset + (long)(pa - runs[index].Start), data);
            written += (ulong)data.Length;
            context.ReportWritten(written);
            return true;
        }, cancellationToken: context.CancellationToken);
        file.Reserve(fileLength);
        file.WriteAt(fileLength, ReadOnlySpan<byte>.Empty);
        return new WriterStatistics(runs.Count, unreadable);
    }

    /// <summary>The kernel page-table root for the header: the first non-zero CR3 the source recorded.</summary>
    private static ulong FindDirectoryTableBase(IPhysicalMemory memory, WriterContext context, out string source)
    {
        if (memory is ICaptureMetadata { Metadata: var metadata })
        {
            foreach (CpuState cpu in metadata.Cpus)
            {
                if (cpu.TryGet("cr3", out ulong cr3) && cr3 != 0)
                {
                    // CR3 bits 0-11 are flags (PCID, PWT, PCD); DirectoryTableBase is the table's address.
                    ulong dtb = cr3 & ~0xFFFUL;
                    source = $"CR3 of CPU {cpu.Index} ({cpu.Source})";
                    context.Notes.Add($"DirectoryTableBase 0x{dtb:X} from the {source}");
                    return dtb;
                }
            }
        }
        source = "0, the source records no CR3";
        context.Notes.Add("DirectoryTableBase is 0: the source capture records no CR3 (tools that need the kernel's page tables must find them by scanning)");
        return 0;
    }

    private static byte[] Header(List<PageRun> runs, bool bitmap, ulong totalPages, ulong fileLength, ulong dtb, string comment)
    {
        byte[] h = new byte[HeaderSize];
        Span<byte> s = h;
        for (int i = 0; i < HeaderSize; i += 4)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(s[i..], CrashDumpLayout.FillPattern32);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(s[CrashDumpLayout.SignatureOffset..], CrashDumpLayout.Signature);
        BinaryPrimitives.WriteUInt32LittleEndian(s[CrashDumpLayout.ValidDumpOffset..], CrashDumpLayout.ValidDump64);
        BinaryPrimitives.WriteUInt32LittleEndian(s[CrashDumpLayout.MajorVersionOffset..], CrashDumpLayout.MajorVersionFree);
        BinaryPrimitives.WriteUInt32LittleEndian(s[CrashDumpLayout.MinorVersionOffset..], 0);   // no NT build: not a Windows capture
        BinaryPrimitives.WriteUInt64LittleEndian(s[CrashDumpLayout.H64.DirectoryTableBase..], dtb);
        BinaryPrimitives.WriteUInt64LittleEndian(s[CrashDumpLayout.H64.PfnDataBase..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(s[CrashDumpLayout.H64.PsLoadedModuleList..], 0);
        BinaryPrimitives.WriteUInt64LittleEndian(s[CrashDumpLayout.H64.PsActiveProcessHead..], 0);
        BinaryPrimitives.WriteUInt32LittleEndian(s[CrashDumpLayout.H64.MachineImageType..], CrashDumpLayout.MachineAmd64);
        BinaryPrimitives.WriteUInt32LittleEndian(s[CrashDumpLayout.H64.NumberProcessors..], 1);
        BinaryPrimitives.WriteUInt64LittleEndian(s[CrashDumpLayout.H64.BugCheckCode..], 0);     // u32 code and its padding
        s.Slice(CrashDumpLayout.H64.BugCheckParameters, CrashDumpLayout.BugCheckParameterCount * sizeof(ulong)).Clear();
        BinaryPrimitives.WriteUInt64LittleEndian(s[CrashDumpLayout.H64.KdDebuggerDataBlock..], 0);
        if (!bitmap)
        {
            // Bitmap dumps leave the descriptor as "PAGE" fill (readers test NumberOfRuns == "PAGE").
            Span<byte> block = s[CrashDumpLayout.H64.PhysicalMemoryBlock..];
            BinaryPrimitives.WriteUInt64LittleEndian(block[CrashDumpLayout.H64.NumberOfRuns..], (uint)runs.Count);   // u32 and its padding
            BinaryPrimitives.WriteUInt64LittleEndian(block[CrashDumpLayout.H64.NumberOfPages..], totalPages);
            for (int i = 0; i < runs.Count; i++)
            {
                Span<byte> run = block[(CrashDumpLayout.H64.Runs + CrashDumpLayout.H64.RunSize * i)..];
                BinaryPrimitives.WriteUInt64LittleEndian(run[CrashDumpLayout.H64.RunBasePage..], runs[i].FirstPfn);
                BinaryPrimitives.WriteUInt64LittleEndian(run[CrashDumpLayout.H64.RunPageCount..], runs[i].Pages);
            }
        }
        BinaryPrimitives.WriteUInt32LittleEndian(s[CrashDumpLayout.H64.DumpType..], bitmap ? CrashDumpLayout.DumpTypeBitmapFull : CrashDumpLayout.DumpTypeFull);
        BinaryPrimitives.WriteUInt64LittleEndian(s[CrashDumpLayout.H64.RequiredDumpSpace..], fileLength);
        BinaryPrimitives.WriteUInt64LittleEndian(s[CrashDumpLayout.H64.SystemTime..], 0);      // capture time unknown
        Span<byte> text = s.Slice(CrashDumpLayout.H64.Comment, CrashDumpLayout.CommentSize);
        text.Clear();
        byte[] ascii = Encoding.ASCII.GetBytes(comment.Length >= CrashDumpLayout.CommentSize ? comment[..(CrashDumpLayout.CommentSize - 1)] : comment);
        ascii.CopyTo(text);
        return h;
    }

    /// <summary>The FDMP header and the bitmap (in 1 MiB pieces), zero-padded to the first page.</summary>
    private static void WriteBitmap(OutputFile file, List<PageRun> runs, ulong bitmapPages, ulong totalPages, long dataStart)
    {
        byte[] head = new byte[CrashDumpLayout.Bitmap.HeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(head.AsSpan(CrashDumpLayout.Bitmap.SignatureOffset), CrashDumpLayout.Bitmap.FullSignature);
        BinaryPrimitives.WriteUInt32LittleEndian(head.AsSpan(CrashDumpLayout.Bitmap.ValidDumpOffset), CrashDumpLayout.Bitmap.ValidDump);
        BinaryPrimitives.WriteUInt64LittleEndian(head.AsSpan(CrashDumpLayout.Bitmap.FirstPage), (ulong)dataStart);
        BinaryPrimitives.WriteUInt64LittleEndian(head.AsSpan(CrashDumpLayout.Bitmap.TotalPresentPages), totalPages);
        BinaryPrimitives.WriteUInt64LittleEndian(head.AsSpan(CrashDumpLayout.Bitmap.Pages), bitmapPages);
        file.WriteAt(HeaderSize, head);

        const int chunkBytes = 1 << 20;
        byte[] chunk = new byte[chunkBytes];
        long bitmapBytes = (long)((bitmapPages + 7) / 8);
        int index = 0;
        for (long at = 0; at < bitmapBytes; at += chunkBytes)
        {
            int count = (int)Math.Min(chunkBytes, bitmapBytes - at);
            Array.Clear(chunk, 0, count);
            ulong chunkFirst = (ulong)at * 8;
            ulong chunkEnd = chunkFirst + (ulong)count * 8;
            while (index < runs.Count && runs[index].FirstPfn < chunkEnd)
            {
                ulong from = Math.Max(runs[index].FirstPfn, chunkFirst);
                ulong to = Math.Min(runs[index].FirstPfn + runs[index].Pages, chunkEnd);
                SetBits(chunk, from - chunkFirst, to - chunkFirst);
                if (runs[index].FirstPfn + runs[index].Pages > chunkEnd)
                {
                    break;   // the run goes on in the next chunk
                }
                index++;
            }
            file.WriteAt(HeaderSize + CrashDumpLayout.Bitmap.Bits + at, chunk.AsSpan(0, count));
        }
        file.Reserve(dataStart);
    }

    private static void SetBits(byte[] bits, ulong from, ulong to)
    {
        for (ulong bit = from; bit < to;)
        {
            if ((bit & 7) == 0 && to - bit >= 8)
            {
                ulong bytes = (to - bit) / 8;
                bits.AsSpan((int)(bit / 8), (int)bytes).Fill(0xFF);
                bit += bytes * 8;
                continue;
            }
            bits[bit / 8] |= (byte)(1 << (int)(bit & 7));
            bit++;
        }
    }

    private static long AlignUp(long value) => (value + PageSize - 1) / PageSize * PageSize;
}
