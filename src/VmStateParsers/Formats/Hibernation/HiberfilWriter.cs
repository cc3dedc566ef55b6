using System.Buffers.Binary;
using CloudMem.VmStateParsers.Codecs;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.VmStateParsers.Formats.Hibernation;

/// <summary>
/// A Windows 8+ hibernation file (hiberfil.sys) in one PO_MEMORY_IMAGE layout (default: x64 Windows 10 1809-22H2,
/// LengthSelf 0x3E0; <c>--variant</c> picks another of <see cref="HibernationLayout.Profiles"/>). Page 0 is the header
/// (signature HIBR and the fields the readers use; everything else zero); the boot restoration set, holding the
/// captured pages below 1 MiB, starts at page 1; the kernel restoration set, holding the rest, starts at the next page
/// boundary. Compression sets of up to 16 pages in physical order, Xpress plain LZ77 (type 0), or stored when that is
/// not smaller. A page only partly covered by the source's runs is written whole, its uncovered bytes as zero.
/// </summary>
/// <remarks>The output follows the layout our reader and its peers (LeechCore, Volatility 3) read; Windows itself
/// could not resume from it (no processor state, free map or checksums).</remarks>
public sealed class HiberfilWriter : ICaptureWriter
{
    private const int PageSize = HibernationLayout.PageSize;
    private const int PagesPerSet = 16;                   // Windows' sets hold 16 pages; one descriptor may cover them all
    private const int MaxSetHeader = HibernationLayout.SetHeaderSize + PagesPerSet * 8;
    private const ulong BootLimitPfn = 0x100;
    private const string DefaultLayout = "win10-1809";

    /// <inheritdoc />
    public string Name => "hiberfil";

    /// <inheritdoc />
    public string Description => "Windows hibernation file (hiberfil.sys), x64 Windows 10 1809-22H2 layout by default, Xpress LZ77";

    /// <inheritdoc />
    public IReadOnlyList<string> Variants { get; } =
        [DefaultLayout, .. HibernationLayout.Profiles.Select(p => p.Name).Where(n => n != DefaultLayout)];

    /// <inheritdoc />
    public string? VerifyAs => HibernationFormat.Id;

    /// <inheritdoc />
    public WriterStatistics Write(IPhysicalMemory memory, WriterContext context)
    {
        HibernationProfile profile = HibernationLayout.FindByName(context.Variant ?? DefaultLayout)
            ?? throw new ConvertException($"unknown hiberfil layout '{context.Variant}'");
        ulong maxPfn = memory.MaxAddress == 0 ? 0 : (memory.MaxAddress - 1) / PageSize;
        if (profile.Is32Bit && maxPfn >= 1UL << 28)
        {
            throw new ConvertException($"the {profile.Name} layout holds page numbers below 2^28 (1 TiB); this capture reaches 0x{memory.MaxAddress:X}");
        }
        var pages = new PageReader(memory, PageSize);
        ulong bootPages = 0;
        ulong totalPages = 0;
        foreach (ulong pfn in PageRanges.PageNumbers(memory.Runs, PageSize))
        {
            totalPages++;
            if (pfn < BootLimitPfn)
            {
                bootPages++;
            }
        }

        // The boot set is small (at most 256 pages): build it in memory to learn where the kernel set starts.
        var boot = new MemoryStream();
        using IEnumerator<ulong> pfns = PageRanges.PageNumbers(memory.Runs, PageSize).GetEnumerator();
        bool more = pfns.MoveNext();
        var stats = new Counters();
        var group = new List<ulong>(PagesPerSet);
        while (more && pfns.Current < BootLimitPfn)
        {
            more = NextGroup(pfns, group, BootLimitPfn);
            WriteSet(boot, group, pages, profile, stats);
        }
        long bootBytes = boot.Length;
        ulong firstKernelPage = 1 + (ulong)((bootBytes + PageSize - 1) / PageSize);

        OutputFile file = context.CreateMain();
        byte[] header = new byte[PageSize];
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(HibernationLayout.SignatureOffset), HibernationLayout.SignatureHibr);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(HibernationLayout.LengthSelfOffset), (uint)profile.LengthSelf);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(profile.PageSize), PageSize);
        BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(profile.SystemTime), DateTime.UtcNow.ToFileTimeUtc());
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(profile.NumPagesForLoader), bootPages);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(profile.KernelPagesProcessed), totalPages - bootPages);
        WritePointer(header, profile, profile.FirstBootRestorePage, 1);
        WritePointer(header, profile, profile.FirstKernelRestorePage, firstKernelPage);
        WritePointer(header, profile, profile.HighestPhysicalPage, maxPfn);
        file.Write(header);
        file.Write(boot.GetBuffer().AsSpan(0, (int)bootBytes));
        file.WriteAt((long)firstKernelPage * PageSize, ReadOnlySpan<byte>.Empty);
        context.ReportWritten(bootPages * PageSize);

        using var sink = new OutputSink(file);
        ulong written = bootPages;
        while (more)
        {
            context.CancellationToken.ThrowIfCancellationRequested();
            more = NextGroup(pfns, group, ulong.MaxValue);
            WriteSet(sink, group, pages, profile, stats);
            written += (ulong)group.Count;
            context.ReportWritten(written * PageSize);
        }
        return new WriterStatistics(stats.Sets, pages.UnreadableBytes);
    }

    private static void WritePointer(Span<byte> header, HibernationProfile profile, int offset, ulong value)
    {
        if (profile.Is32Bit)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(header[offset..], checked((uint)value));
        }
        else
        {
            BinaryPrimitives.WriteUInt64LittleEndian(header[offset..], value);
        }
    }

    /// <summary>Fills <paramref name="group"/> with up to 16 page numbers below <paramref name="limit"/>, starting at the current one.</summary>
    private static bool NextGroup(IEnumerator<ulong> pfns, List<ulong> group, ulong limit)
    {
        group.Clear();
        bool more = true;
        while (more && group.Count < PagesPerSet && pfns.Current < limit)
        {
            group.Add(pfns.Current);
            more = pfns.MoveNext();
        }
        return more;
    }

    /// <summary>Writes one compression set: header, one descriptor per contiguous stretch, then the data.</summary>
    private static void WriteSet(Stream output, List<ulong> group, PageReader pages, HibernationProfile profile, Counters stats)
    {
        int raw = group.Count * PageSize;
        byte[] data = stats.Data;
        for (int i = 0; i < group.Count; i++)
        {
            pages.Read(group[i] * PageSize, data.AsSpan(i * PageSize, PageSize));
        }
        int compressed = XpressLz77Compressor.Compress(data.AsSpan(0, raw), stats.Compressed);
        ReadOnlySpan<byte> stored = compressed > 0 && compressed < raw ? stats.Compressed.AsSpan(0, compressed) : data.AsSpan(0, raw);

        Span<byte> head = stackalloc byte[MaxSetHeader];
        int descriptors = 0;
        int at = HibernationLayout.SetHeaderSize;
        for (int i = 0; i < group.Count;)
        {
            int j = i + 1;
            while (j < group.Count && group[j] == group[j - 1] + 1)
            {
                j++;
            }
            ulong value = (group[i] << HibernationLayout.DescriptorPageBits) | (uint)(j - i - 1);
            if (profile.Is32Bit)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(head[at..], (uint)value);
            }
            else
            {
                BinaryPrimitives.WriteUInt64LittleEndian(head[at..], value);
            }
            at += profile.DescriptorSize;
            descriptors++;
            i = j;
        }
        BinaryPrimitives.WriteUInt32LittleEndian(head, (uint)descriptors | ((uint)stored.Length << HibernationLayout.SetSizeShift));
        output.Write(head[..at]);
        output.Write(stored);
        stats.Sets++;
    }

    private sealed class Counters
    {
        public int Sets;
        public readonly byte[] Data = new byte[PagesPerSet * PageSize];
        public readonly byte[] Compressed = new byte[XpressLz77Compressor.MaxCompressedLength(PagesPerSet * PageSize)];
    }

    /// <summary>Adapts an <see cref="OutputFile"/> to the <see cref="Stream"/> the set writer appends to.</summary>
    private sealed class OutputSink(OutputFile file) : Stream
    {
        public override bool CanRead => false;
        public override bool CanSeek => false;
        public override bool CanWrite => true;
        public override long Length => file.Position;
        public override long Position { get => file.Position; set => throw new NotSupportedException(); }
        public override void Flush() { }
        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => file.Write(buffer.AsSpan(offset, count));
        public override void Write(ReadOnlySpan<byte> buffer) => file.Write(buffer);
    }
}
