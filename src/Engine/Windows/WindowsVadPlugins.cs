using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>One VAD (windows.vadinfo).</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Process">ImageFileName.</param>
/// <param name="Offset">Kernel address of the VAD node.</param>
/// <param name="Start">First address.</param>
/// <param name="End">Last address (inclusive).</param>
/// <param name="Tag">Pool tag ('VadS' short private VAD, 'Vad ' long VAD with a file, ...), or null.</param>
/// <param name="Protection">PAGE_* protection the range was created with.</param>
/// <param name="Type">Image, Private or Mapped.</param>
/// <param name="CommitCharge">Committed pages charged to the VAD.</param>
/// <param name="PrivateMemory">The PrivateMemory flag.</param>
/// <param name="Parent">Parent node.</param>
/// <param name="File">Mapped file name (image and mapped VADs), or null.</param>
public sealed record WindowsVadRow(long Pid, string Process, [property: Hex] ulong Offset, [property: Hex] ulong Start, [property: Hex] ulong End,
    string? Tag, string Protection, VadKind Type, ulong CommitCharge, bool PrivateMemory, [property: Hex] ulong Parent, string? File);

/// <summary>A PE image in a process: an image VAD, or any VAD starting with an MZ header (windows.ldrmodules).</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Process">ImageFileName.</param>
/// <param name="Base">Start of the VAD.</param>
/// <param name="InLoad">On InLoadOrderModuleList.</param>
/// <param name="InInit">On InInitializationOrderModuleList.</param>
/// <param name="InMem">On InMemoryOrderModuleList.</param>
/// <param name="MappedPath">The VAD's file name (null for private memory).</param>
/// <param name="Type">The VAD's type: Image, Private or Mapped.</param>
/// <param name="Suspicious">Why the module stands out (off a list it should be on, PE in memory that is not an image), or null.</param>
public sealed record WindowsLdrModuleRow(long Pid, string Process, [property: Hex] ulong Base, bool InLoad, bool InInit, bool InMem, string? MappedPath,
    VadKind Type, string? Suspicious);

/// <summary>Executable memory that is not a mapped image and holds something (windows.malfind).</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Process">ImageFileName.</param>
/// <param name="Start">First address.</param>
/// <param name="End">Last address (inclusive).</param>
/// <param name="Tag">VAD pool tag.</param>
/// <param name="Protection">PAGE_* protection.</param>
/// <param name="Type">Private or Mapped.</param>
/// <param name="CommitCharge">Committed pages.</param>
/// <param name="PrivateMemory">The PrivateMemory flag.</param>
/// <param name="Notes">What the first bytes are ("MZ header", "code") and whether the range is also writable.</param>
/// <param name="Hexdump">The first 64 bytes, 16 per line.</param>
/// <param name="Disassembly">The first instructions of those bytes (x86-64, Intel syntax).</param>
public sealed record WindowsMalfindRow(long Pid, string Process, [property: Hex] ulong Start, [property: Hex] ulong End, string? Tag, string Protection, VadKind Type,
    ulong CommitCharge, bool PrivateMemory, string Notes, IReadOnlyList<string> Hexdump, IReadOnlyList<string> Disassembly) : IRowDetail
{
    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public string DetailTitle => $"pid {Pid} {Process} {Output.Hex.Of(Start)}-{Output.Hex.Of(End)} {Protection}";

    /// <inheritdoc />
    [System.Text.Json.Serialization.JsonIgnore]
    public IEnumerable<string> DetailLines => Hexdump.Count == 0 ? [] : Hexdump.Concat([""]).Concat(Disassembly);
}

/// <summary>What is wrong with a process's executable mapping (windows.hollowfind).</summary>
public enum HollowSign
{
    /// <summary>No VAD starts at PEB.ImageBaseAddress.</summary>
    NoVad,

    /// <summary>The VAD at PEB.ImageBaseAddress is not an image section (private or data memory: the image was unmapped and replaced).</summary>
    NotImage,

    /// <summary>The image VAD maps another file than the process's image path (or name).</summary>
    PathMismatch,

    /// <summary>PEB.ImageBaseAddress differs from _EPROCESS.SectionBaseAddress.</summary>
    BaseMismatch,
}

/// <summary>A process whose executable mapping shows signs of hollowing (windows.hollowfind).</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Process">ImageFileName.</param>
/// <param name="Sign">Which sign.</param>
/// <param name="ImageBase">PEB.ImageBaseAddress.</param>
/// <param name="SectionBase">_EPROCESS.SectionBaseAddress, or null.</param>
/// <param name="VadStart">Start of the VAD at the image base, or null.</param>
/// <param name="VadType">Its type, or null.</param>
/// <param name="VadProtection">Its protection, or null.</param>
/// <param name="MappedPath">Its file name, or null.</param>
/// <param name="ImagePath">ProcessParameters.ImagePathName, or null.</param>
/// <param name="Details">One sentence.</param>
public sealed record WindowsHollowRow(long Pid, string Process, HollowSign Sign, [property: Hex] ulong ImageBase, [property: Hex] ulong? SectionBase,
    [property: Hex] ulong? VadStart,
    VadKind? VadType, string? VadProtection, string? MappedPath, string? ImagePath, string Details);

/// <summary>
/// The VAD-based Windows plugins: windows.vadinfo, windows.ldrmodules, windows.malfind and windows.hollowfind, over the
/// processes on the active process list (or the given pids).
/// </summary>
public static class WindowsVadPlugins
{
    private const int DumpBytes = 64, Instructions = 16;
    private const int PageSize = 0x1000;

    /// <summary>Pages of a VAD examined for non-zero content before it is called empty (bounds the cost on huge reservations).</summary>
    public const int MaxPagesExamined = 4096;

    /// <summary>windows.vadinfo: every VAD of every process, in address order.</summary>
    public static RowsReport<WindowsVadRow> VadInfo(WindowsKernel kernel, ISet<long>? pids = null, CancellationToken ct = default)
    {
        WindowsVads walker = WindowsVads.For(kernel);
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.Select(kernel, pids, ct);
        var rows = new List<WindowsVadRow>();
        foreach (WindowsProcess p in processes)
        {
            (List<WindowsVad> vads, List<string> walkNotes) = walker.List(p.Offset, p.Pid, ct);
            notes.AddRange(walkNotes);
            rows.AddRange(vads.Select(v => new WindowsVadRow(p.Pid, p.ImageFileName, v.Node, v.Start, v.End, v.Tag, v.Protection,
                v.Kind, v.CommitCharge, v.PrivateMemory, v.Parent, v.FileName)));
        }
        return new RowsReport<WindowsVadRow>("windows.vadinfo", rows, notes);
    }

    /// <summary>
    /// windows.ldrmodules: every image VAD and every other VAD that starts with an MZ header, with whether its base is on
    /// each of the three PEB loader lists. A DLL mapped but on no list (or only some) is the sign of a hidden module;
    /// a PE in private memory the sign of a manually mapped one. List entries with no VAD at their base are noted.
    /// </summary>
    public static RowsReport<WindowsLdrModuleRow> LdrModules(WindowsKernel kernel, ISet<long>? pids = null, CancellationToken ct = default)
    {
        WindowsVads walker = WindowsVads.For(kernel);
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.Select(kernel, pids, ct);
        var rows = new List<WindowsLdrModuleRow>();
        Span<byte> mz = stackalloc byte[2];
        foreach (WindowsProcess p in processes)
        {
            ct.ThrowIfCancellationRequested();
            WindowsProcessImage image = WindowsProcessImage.Read(kernel, p, notes, ct: ct);
            if (image.Peb == 0)
            {
                continue;
            }
            (List<WindowsVad> vads, List<string> walkNotes) = walker.List(p.Offset, p.Pid, ct);
            notes.AddRange(walkNotes);
            var load = image.LoadOrder.Select(e => e.Base).ToHashSet();
            var init = image.InitOrder.Select(e => e.Base).ToHashSet();
            var mem = image.MemoryOrder.Select(e => e.Base).ToHashSet();
            foreach (WindowsVad v in vads)
            {
                bool isMz = image.Space.Read(v.Start, mz) == 2 && mz[0] == (byte)'M' && mz[1] == (byte)'Z';
                if (v.Kind != VadKind.Image && !isMz)
                {
                    continue;
                }
                bool inLoad = load.Contains(v.Start), inInit = init.Contains(v.Start), inMem = mem.Contains(v.Start);
                bool exe = image.ImageBase == v.Start;
                string? why = v.Kind != VadKind.Image ? $"PE header in {v.Kind.ToString().ToLowerInvariant()} memory (not an image section)"
                    : !inLoad && !inMem && !inInit ? "image mapped but on no loader list"
                    : !inLoad || !inMem || (!inInit && !exe) ? $"missing from the {string.Join(", ", new[] { inLoad ? null : "load", inInit || exe ? null : "init", inMem ? null : "memory" }.Where(x => x is not null))} order list"
                    : null;
                rows.Add(new WindowsLdrModuleRow(p.Pid, p.ImageFileName, v.Start, inLoad, inInit, inMem, v.FileName, v.Kind, why));
            }
            foreach (ulong orphan in load.Concat(init).Concat(mem).Distinct().Where(b => !vads.Any(v => v.Start == b)))
            {
                WindowsLoadedModule entry = image.LoadOrder.Concat(image.MemoryOrder).Concat(image.InitOrder).First(e => e.Base == orphan);
                notes.Add($"pid {p.Pid}: loader entry {entry.Path ?? entry.Name ?? "(unreadable name)"} at 0x{orphan:X} has no VAD starting there");
            }
        }
        return new RowsReport<WindowsLdrModuleRow>("windows.ldrmodules", rows, notes);
    }

    /// <summary>
    /// Why a VAD is a malfind hit, or null: it is not an image section, its protection allows execution, and it holds
    /// something (a page in the capture with a non-zero byte). Image VADs and non-executable memory never are.
    /// </summary>
    public static string? Classify(WindowsVad vad, IVirtualMemory space, ReadOnlySpan<byte> head)
    {
        if (vad.Kind == VadKind.Image || !vad.Executable || IsEmpty(vad, space))
        {
            return null;
        }
        var notes = new List<string>();
        if (head.Length >= 2 && head[0] == (byte)'M' && head[1] == (byte)'Z')
        {
            notes.Add("MZ header");
        }
        else
        {
            notes.Add(head.IndexOfAnyExcept((byte)0) >= 0 ? "code or data in executable memory" : "content after a zero first page");
        }
        if (vad.Writable)
        {
            notes.Add("writable and executable");
        }
        notes.Add(vad.Kind == VadKind.Private ? "private memory" : "mapped data (not an image)");
        return string.Join("; ", notes);
    }

    private static bool IsEmpty(WindowsVad vad, IVirtualMemory space)
    {
        byte[] page = new byte[PageSize];
        ulong pages = Math.Min(vad.Size / PageSize, MaxPagesExamined);
        for (ulong i = 0; i < pages; i++)
        {
            int got = space.Read(vad.Start + i * PageSize, page);
            if (page.AsSpan(0, got).IndexOfAnyExcept((byte)0) >= 0)
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>windows.malfind: executable non-image memory with content, with a hexdump and disassembly of its start.</summary>
    public static RowsReport<WindowsMalfindRow> Malfind(WindowsKernel kernel, ISet<long>? pids = null, CancellationToken ct = default)
    {
        WindowsVads walker = WindowsVads.For(kernel);
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.Select(kernel, pids, ct);
        var rows = new List<WindowsMalfindRow>();
        foreach (WindowsProcess p in processes)
        {
            (List<WindowsVad> vads, List<string> walkNotes) = walker.List(p.Offset, p.Pid, ct);
            notes.AddRange(walkNotes);
            AddressSpace space = kernel.ProcessSpace(p.Dtb);
            foreach (WindowsVad v in vads)
            {
                ct.ThrowIfCancellationRequested();
                if (v.Kind == VadKind.Image || !v.Executable)
                {
                    continue;   // Classify would drop it: no read for the images and data that are most VADs
                }
                byte[] head = new byte[(int)Math.Min((ulong)DumpBytes, v.Size)];
                int got = space.Read(v.Start, head);
                string? why = Classify(v, space, head.AsSpan(0, got));
                if (why is null)
                {
                    continue;
                }
                rows.Add(new WindowsMalfindRow(p.Pid, p.ImageFileName, v.Start, v.End, v.Tag, v.Protection, v.Kind, v.CommitCharge,
                    v.PrivateMemory, why, CodeView.HexLines(head.AsSpan(0, got), v.Start), CodeView.Disassemble(head.AsSpan(0, got), v.Start, Instructions)));
            }
        }
        return new RowsReport<WindowsMalfindRow>("windows.malfind", rows, notes);
    }

    /// <summary>
    /// windows.hollowfind: processes whose PEB.ImageBaseAddress has no VAD, or a VAD that is not an image section, or an
    /// image VAD mapping another file than the process's image path; and processes whose PEB image base differs from
    /// the kernel's SectionBaseAddress. One row per sign.
    /// </summary>
    public static RowsReport<WindowsHollowRow> HollowFind(WindowsKernel kernel, ISet<long>? pids = null, CancellationToken ct = default)
    {
        WindowsVads walker = WindowsVads.For(kernel);
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.Select(kernel, pids, ct);
        var rows = new List<WindowsHollowRow>();
        foreach (WindowsProcess p in processes)
        {
            ct.ThrowIfCancellationRequested();
            WindowsProcessImage image = WindowsProcessImage.Read(kernel, p, notes, lists: false, ct: ct);
            if (image.Peb == 0 || image.ImageBase is not ulong imageBase)
            {
                continue;
            }
            (List<WindowsVad> vads, List<string> walkNotes) = walker.List(p.Offset, p.Pid, ct);
            notes.AddRange(walkNotes);
            WindowsVad? vad = vads.FirstOrDefault(v => v.Start == imageBase);
            WindowsHollowRow Row(HollowSign sign, string details) => new(p.Pid, p.ImageFileName, sign, imageBase, image.SectionBase,
                vad?.Start, vad?.Kind, vad?.Protection, vad?.FileName, image.ImagePath, details);
            if (vad is null)
            {
                WindowsVad? inside = vads.FirstOrDefault(v => v.Contains(imageBase));
                rows.Add(Row(HollowSign.NoVad, inside is null
                    ? $"no VAD starts at or contains the PEB image base 0x{imageBase:X}"
                    : $"the PEB image base 0x{imageBase:X} is inside the {inside.Kind.ToString().ToLowerInvariant()} VAD 0x{inside.Start:X}-0x{inside.End:X}, not at its start"));
            }
            else if (vad.Kind != VadKind.Image)
            {
                rows.Add(Row(HollowSign.NotImage, $"the executable's VAD is {vad.Kind.ToString().ToLowerInvariant()} memory ({vad.Protection}), not an image section: the image was unmapped and replaced"));
            }
            else if (!SameFile(vad.FileName, image.ImagePath, p.ImageFileName))
            {
                rows.Add(Row(HollowSign.PathMismatch, $"the image section maps {vad.FileName ?? "(unreadable name)"}, but the process is {image.ImagePath ?? p.ImageFileName}"));
            }
            if (image.SectionBase is ulong sectionBase && sectionBase != imageBase)
            {
                rows.Add(Row(HollowSign.BaseMismatch, $"PEB.ImageBaseAddress 0x{imageBase:X} differs from SectionBaseAddress 0x{sectionBase:X}"));
            }
        }
        return new RowsReport<WindowsHollowRow>("windows.hollowfind", rows, notes);
    }

    /// <summary>
    /// Whether a section's file name (\Device\HarddiskVolumeN\dir\x.exe) is the process's image path (C:\dir\x.exe):
    /// compared without the device or drive, case-insensitively; without a path, the file name against the 15-byte
    /// ImageFileName prefix.
    /// </summary>
    public static bool SameFile(string? mapped, string? imagePath, string imageFileName)
    {
        if (mapped is null)
        {
            return true;     // unreadable: no evidence either way
        }
        if (!string.IsNullOrEmpty(imagePath))
        {
            return string.Equals(WithoutVolume(mapped), WithoutVolume(imagePath), StringComparison.OrdinalIgnoreCase);
        }
        string name = mapped[(mapped.LastIndexOf('\\') + 1)..];
        return name.StartsWith(imageFileName, StringComparison.OrdinalIgnoreCase);
    }

    /// <summary>The path after "\Device\X", "\??\C:", "\\?\C:" or "C:".</summary>
    internal static string WithoutVolume(string path)
    {
        string p = path;
        foreach (string prefix in new[] { @"\??\", @"\\?\" })
        {
            if (p.StartsWith(prefix, StringComparison.Ordinal))
            {
                p = p[prefix.Length..];
            }
        }
        if (p.StartsWith(@"\Device\", StringComparison.OrdinalIgnoreCase))
        {
            int next = p.IndexOf('\\', @"\Device\".Length);
            return next < 0 ? p : p[next..];
        }
        return p.Length >= 2 && p[1] == ':' ? p[2..] : p;
    }
}
