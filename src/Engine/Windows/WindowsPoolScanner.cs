using CloudMem.Engine.Core;
using System.Buffers.Binary;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Windows;

/// <summary>One _EPROCESS found by windows.psscan.</summary>
/// <param name="Offset">Physical address of the _EPROCESS body.</param>
/// <param name="Pid">UniqueProcessId.</param>
/// <param name="Ppid">InheritedFromUniqueProcessId.</param>
/// <param name="ImageFileName">The 15-byte ImageFileName.</param>
/// <param name="CreateTime">As in windows.pslist.</param>
/// <param name="OnList">True when the same _EPROCESS is on PsActiveProcessHead.</param>
public sealed record WindowsScannedProcess([property: Hex] ulong Offset, long Pid, long Ppid, string ImageFileName, DateTimeOffset? CreateTime, bool OnList);

/// <summary>
/// windows.psscan: physical memory scanned for process pool allocations (_POOL_HEADER tag 'Proc', or 'Pro\xE3' with the
/// protected bit), each followed by optional object headers and an _OBJECT_HEADER whose Body is the _EPROCESS.
/// </summary>
public static class WindowsPoolScanner
{
    private const int PageSize = 0x1000;
    private const int PoolAlignment = 16;

    /// <summary>Most optional object header bytes tried between the pool header and the _OBJECT_HEADER.</summary>
    public const int MaxOptionalHeaderBytes = 0x100;

    /// <summary>The stage name <see cref="ScanPool"/> reports progress under.</summary>
    public const string ProgressStage = "pool scan";

    private static readonly uint[] s_tags = [0x636F7250, 0xE36F7250];   // "Proc", "Pro\xE3"

    /// <summary>Scans every non-zero run; validated candidates are compared with the active process list.</summary>
    /// <param name="kernel">The located kernel.</param>
    /// <param name="ct">Cancels the scan.</param>
    /// <param name="progress">Receives the scan's progress (bytes of non-zero runs), or null.</param>
    /// <param name="degreeOfParallelism">Scan threads; null for the default (the rows do not depend on it).</param>
    public static RowsReport<WindowsScannedProcess> PsScan(WindowsKernel kernel, CancellationToken ct = default, IProgressSink? progress = null, int? degreeOfParallelism = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var notes = new List<string>();
        var onList = new HashSet<ulong>();
        (List<WindowsProcess> listed, List<string> listNotes) = WindowsProcesses.List(kernel, ct);
        notes.AddRange(listNotes.Select(n => "pslist: " + n));
        foreach (WindowsProcess p in listed)
        {
            if (kernel.Kernel.TryTranslate(p.Offset, out var translation, out _))
            {
                onList.Add(translation.PhysicalAddress);
            }
        }
        Layout layout = Layout.From(kernel.Types);
        var rows = new List<WindowsScannedProcess>();
        IPhysicalMemory physical = kernel.Physical;
        byte[] body = new byte[layout.Extent];
        int minimum = layout.PoolHeaderSize + layout.BodyOffset + layout.MinimumBody;
        foreach ((ulong pool, ulong blockBytes) in ScanPool(physical, kernel.Types, s_tags, minimum, ct, progress, degreeOfParallelism))
        {
            for (int optional = 0; optional <= MaxOptionalHeaderBytes; optional += PoolAlignment)
            {
                ulong candidate = pool + (ulong)(layout.PoolHeaderSize + optional + layout.BodyOffset);
                if (candidate + (ulong)layout.MinimumBody > pool + blockBytes)
                {
                    break;
                }
                if (physical.Read(candidate, body) != body.Length || !TryDecode(layout, body, out var decoded))
                {
                    continue;
                }
                if (rows.Count >= AnalysisLimits.Default.MaxScanResults)
                {
                    notes.Add($"more than {AnalysisLimits.Default.MaxScanResults} processes; scan stopped");
                    return new RowsReport<WindowsScannedProcess>("windows.psscan", rows, notes);
                }
                rows.Add(new WindowsScannedProcess(candidate, decoded.Pid, decoded.Ppid, decoded.Name,
                    WindowsProcesses.FileTime(decoded.Created), onList.Contains(candidate)));
                break;
            }
        }
        return new RowsReport<WindowsScannedProcess>("windows.psscan", rows, notes);
    }

    /// <summary>
    /// I/O manager objects (file, driver, device objects) in pool allocations tagged <paramref name="tags"/>: the body
    /// right after the object header, optional headers tried in 16-byte steps, kept when its Type field (u16 at
    /// <paramref name="typeField"/>) is <paramref name="ioType"/> and its Size field (u16 at <paramref name="sizeField"/>) is
    /// <paramref name="size"/>. Yields the body's physical address and its bytes (the buffer is reused: read it before
    /// the next item).
    /// </summary>
    internal static IEnumerable<(ulong Physical, byte[] Body)> ScanIoObjects(WindowsKernel kernel, IReadOnlyCollection<uint> tags, int size, int typeField,
        int sizeField, ushort ioType, CancellationToken ct, IProgressSink? progress)
    {
        int bodyOffset = kernel.Types.RequiredOffset("_OBJECT_HEADER", "Body");
        int poolHeader = kernel.Types.RequiredSize("_POOL_HEADER");
        byte[] body = new byte[size];
        foreach ((ulong pool, ulong blockBytes) in ScanPool(kernel.Physical, kernel.Types, tags, poolHeader + bodyOffset + size, ct, progress))
        {
            for (int optional = 0; optional <= MaxOptionalHeaderBytes; optional += 16)
            {
                ulong candidate = pool + (ulong)(poolHeader + optional + bodyOffset);
                if (candidate + (ulong)size > pool + blockBytes)
                {
                    break;
                }
                if (kernel.Physical.Read(candidate, body) == body.Length
                    && System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(body.AsSpan(typeField)) == ioType
                    && System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(body.AsSpan(sizeField)) == size)
                {
                    yield return (candidate, body);
                    break;
                }
            }
        }
    }

    /// <summary>
    /// The shared pool walker: every 16-byte aligned _POOL_HEADER in non-zero runs whose PoolTag is one of
    /// <paramref name="tags"/>, that is allocated (PoolType non-zero) and whose BlockSize covers at least
    /// <paramref name="minimumBytes"/>. Yields the physical address of the header and the allocation's size in bytes.
    /// Field positions come from the ISF's _POOL_HEADER; reads never throw (unreadable pages are skipped).
    /// <paramref name="progress"/>, when given, hears of the bytes of non-zero runs scanned (stage "pool scan").
    /// </summary>
    /// <param name="physical">The capture.</param>
    /// <param name="types">The kernel's types (_POOL_HEADER).</param>
    /// <param name="tags">Wanted tags (little-endian 32-bit).</param>
    /// <param name="minimumBytes">Smallest allocation kept.</param>
    /// <param name="ct">Cancellation.</param>
    /// <param name="progress">Progress sink, or null.</param>
    /// <param name="degreeOfParallelism">Threads; null for the default.</param>
    /// <remarks>Runs on <paramref name="degreeOfParallelism"/> threads (null: <see cref="ParallelScan.DefaultDegreeOfParallelism"/>),
    /// 4 MiB blocks read in place where the capture allows, tags found by vector compares; the hits come in address
    /// order whatever the thread count.</remarks>
    public static IEnumerable<(ulong PoolHeader, ulong BlockBytes)> ScanPool(IPhysicalMemory physical, TypeModel types,
        IReadOnlyCollection<uint> tags, int minimumBytes, CancellationToken ct = default, IProgressSink? progress = null, int? degreeOfParallelism = null)
    {
        ArgumentNullException.ThrowIfNull(physical);
        ArgumentNullException.ThrowIfNull(types);
        ArgumentNullException.ThrowIfNull(tags);
        Layout layout = Layout.From(types);
        var search = new PoolTagSearch([.. tags], layout.TagOffset, layout.PoolHeaderSize);
        return ParallelScan.Blocks<(ulong, ulong)>(physical, ScanBlockBytes, PoolAlignment, (in ScanBlock block, ReadOnlySpan<byte> data, List<(ulong, ulong)> hits) =>
        {
            // Only 16-byte slots of pages wholly inside the run (as the kernel's pool pages are), owned by this block.
            ulong firstPage = (block.RangeStart + PageSize - 1) & ~(ulong)(PageSize - 1);
            ulong lo = (Math.Max(block.PhysicalAddress, firstPage) + PoolAlignment - 1) & ~(ulong)(PoolAlignment - 1);
            ulong hi = Math.Min(block.PhysicalAddress + (ulong)block.Owned, block.RangeEnd & ~(ulong)(PageSize - 1));
            if (hi <= lo)
            {
                return;
            }
            ulong at0 = block.PhysicalAddress;
            int to = (int)Math.Min(hi - at0, (ulong)Math.Max(0, data.Length - layout.PoolHeaderSize + 1));
            search.Find(data, (int)(lo - at0), to, (ReadOnlySpan<byte> d, int at) =>
            {
                ulong header = BinaryPrimitives.ReadUInt64LittleEndian(d[at..]);
                ulong blockBytes = Bits(header, layout.BlockSize) * PoolAlignment;
                if (Bits(header, layout.PoolType) != 0 && blockBytes >= (ulong)minimumBytes)
                {
                    hits.Add((at0 + (ulong)at, blockBytes));
                }
            });
        }, coalesce: false, degreeOfParallelism, progress is null ? null : (done, total) => progress.Report(ProgressStage, done, total), ct);
    }

    /// <summary>Bytes per block of the parallel pool scan.</summary>
    private const int ScanBlockBytes = 4 << 20;

    /// <summary>Checks an _EPROCESS candidate: pid/ppid range, printable name, page-aligned DTB, canonical kernel list pointers.</summary>
    private static bool TryDecode(Layout l, byte[] b, out (long Pid, long Ppid, string Name, ulong Created) decoded)
    {
        decoded = default;
        ulong pid = U64(b, l.Pid), ppid = U64(b, l.Ppid), dtb = U64(b, l.Dtb);
        ulong flink = U64(b, l.Links), blink = U64(b, l.Links + 8);
        if (pid > uint.MaxValue || ppid > uint.MaxValue || pid % 4 != 0 || ppid % 4 != 0
            || dtb == 0 || (dtb & (PageSize - 1)) != 0 || dtb >> 52 != 0
            || !KernelPointer(flink) || !KernelPointer(blink))
        {
            return false;
        }
        int length = 0;
        while (length < 15 && b[l.Name + length] != 0)
        {
            if (b[l.Name + length] is < 0x20 or > 0x7E)
            {
                return false;
            }
            length++;
        }
        if (length == 0)
        {
            return false;
        }
        for (int k = length; k < 15; k++)
        {
            if (b[l.Name + k] != 0)
            {
                return false;   // garbage after the terminator: not a name
            }
        }
        decoded = ((long)pid, (long)ppid, System.Text.Encoding.ASCII.GetString(b, l.Name, length), U64(b, l.CreateTime));
        return true;
    }

    private static bool KernelPointer(ulong p) => p >= 0xFFFF800000000000UL;

    private static ulong U64(byte[] b, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(offset));

    private static ulong Bits(ulong value, (int Shift, int Width) field) => (value >> field.Shift) & ((1UL << field.Width) - 1);

    /// <summary>ISF offsets used by the scanner.</summary>
    private sealed record Layout(int PoolHeaderSize, int TagOffset, (int, int) BlockSize, (int, int) PoolType, int BodyOffset,
        int Pid, int Ppid, int Name, int CreateTime, int Dtb, int Links)
    {
        /// <summary>Bytes of the _EPROCESS read per candidate (up to the last field checked).</summary>
        public int Extent => Math.Max(new[] { Pid, Ppid, CreateTime, Dtb, Links + 8 }.Max() + 8, Name + 15);

        /// <summary>Smallest body the allocation must hold.</summary>
        public int MinimumBody => Extent;

        public static Layout From(TypeModel t)
        {
            int Off(string s, string f) => t.RequiredOffset(s, f);
            (int, int) Field(string s, string f)
            {
                FieldInfo field = t.RequiredField(s, f);
                int width = field.IsBitfield ? field.BitSize : field.Type.Resolve().Size * 8;
                if (field.BitOffset + width > 64)
                {
                    throw new KernelNotFoundException($"{t.Source}: {s}.{f} is not in the first 8 bytes");
                }
                return ((int)field.BitOffset, width);
            }
            int size = t.RequiredSize("_POOL_HEADER");
            return new Layout(size, Off("_POOL_HEADER", "PoolTag"), Field("_POOL_HEADER", "BlockSize"), Field("_POOL_HEADER", "PoolType"),
                Off("_OBJECT_HEADER", "Body"), Off("_EPROCESS", "UniqueProcessId"), Off("_EPROCESS", "InheritedFromUniqueProcessId"),
                Off("_EPROCESS", "ImageFileName"), Off("_EPROCESS", "CreateTime"),
                Off("_EPROCESS", "Pcb") + Off("_KPROCESS", "DirectoryTableBase"), Off("_EPROCESS", "ActiveProcessLinks"));
        }
    }
}
