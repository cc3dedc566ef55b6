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
    public static RowsReport<WindowsScannedProcess> PsScan(WindowsKernel kernel, CancellationToken ct = default, IProgressSink? progress = null)
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
        foreach ((ulong pool, ulong blockBytes) in ScanPool(physical, kernel.Types, s_tags, minimum, ct, progress))
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
    /// The shared pool walker: every 16-byte aligned _POOL_HEADER in non-zero runs whose PoolTag is one of
    /// <paramref name="tags"/>, that is allocated (PoolType non-zero) and whose BlockSize covers at least
    /// <paramref name="minimumBytes"/>. Yields the physical address of the header and the allocation's size in bytes.
    /// Field positions come from the ISF's _POOL_HEADER; reads never throw (unreadable pages are skipped).
    /// <paramref name="progress"/>, when given, hears of the bytes of non-zero runs scanned (stage "pool scan").
    /// </summary>
    public static IEnumerable<(ulong PoolHeader, ulong BlockBytes)> ScanPool(IPhysicalMemory physical, TypeModel types,
        IReadOnlyCollection<uint> tags, int minimumBytes, CancellationToken ct = default, IProgressSink? progress = null)
    {
        ArgumentNullException.ThrowIfNull(physical);
        ArgumentNullException.ThrowIfNull(types);
        ArgumentNullException.ThrowIfNull(tags);
        Layout layout = Layout.From(types);
        uint[] wanted = [.. tags];                 // Array.IndexOf: no interface dispatch in the per-16-byte loop
        byte[] page = new byte[PageSize];
        long total = physical.Runs.Where(r => r.Storage != RunStorage.Zero).Sum(r => (long)(r.End - r.PhysicalAddress));
        long done = 0;
        progress?.Report(ProgressStage, 0, total);
        foreach (PhysicalRun run in physical.Runs)
        {
            ct.ThrowIfCancellationRequested();
            if (run.Storage == RunStorage.Zero)
            {
                continue;
            }
            ulong first = (run.PhysicalAddress + PageSize - 1) & ~(ulong)(PageSize - 1);
            for (ulong pa = first; pa + PageSize <= run.End && pa >= first; pa += PageSize)
            {
                if (((pa >> 12) & 0x3FFF) == 0)
                {
                    ct.ThrowIfCancellationRequested();
                    progress?.Report(ProgressStage, done + (long)(pa - run.PhysicalAddress), total);
                }
                if (physical.Read(pa, page) != PageSize)
                {
                    continue;
                }
                for (int at = 0; at + layout.PoolHeaderSize <= PageSize; at += PoolAlignment)
                {
                    if (Array.IndexOf(wanted, BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(at + layout.TagOffset))) < 0)
                    {
                        continue;
                    }
                    ulong header = BinaryPrimitives.ReadUInt64LittleEndian(page.AsSpan(at));
                    ulong blockBytes = Bits(header, layout.BlockSize) * PoolAlignment;
                    if (Bits(header, layout.PoolType) != 0 && blockBytes >= (ulong)minimumBytes)
                    {
                        yield return (pa + (ulong)at, blockBytes);
                    }
                }
            }
            done += (long)(run.End - run.PhysicalAddress);
        }
        progress?.Report(ProgressStage, total, total);
    }

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
