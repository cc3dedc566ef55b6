using CloudMem.Engine.Core;
using System.Buffers.Binary;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Windows;

/// <summary>A kernel module on PsLoadedModuleList (windows.modules).</summary>
/// <param name="Offset">Virtual address of its _KLDR_DATA_TABLE_ENTRY.</param>
/// <param name="Base">DllBase.</param>
/// <param name="Size">SizeOfImage.</param>
/// <param name="Name">BaseDllName (null: does not read).</param>
/// <param name="Path">FullDllName (null: does not read).</param>
public sealed record WindowsModule([property: Hex] ulong Offset, [property: Hex] ulong Base, [property: Hex] uint Size, string? Name, string? Path);

/// <summary>A kernel module entry found by scanning for its pool allocation (windows.modscan).</summary>
/// <param name="Offset">Physical address of the entry.</param>
/// <param name="Base">DllBase.</param>
/// <param name="Size">SizeOfImage.</param>
/// <param name="Name">BaseDllName.</param>
/// <param name="Path">FullDllName (null: does not read).</param>
/// <param name="OnList">True when the same entry is on PsLoadedModuleList; false for an unlinked (hidden or unloaded) module.</param>
public sealed record WindowsScannedModule([property: Hex] ulong Offset, [property: Hex] ulong Base, [property: Hex] uint Size, string Name, string? Path,
    bool OnList);

/// <summary>
/// Kernel modules: windows.modules walks PsLoadedModuleList (InLoadOrderLinks of _KLDR_DATA_TABLE_ENTRY, or
/// _LDR_DATA_TABLE_ENTRY on Windows 7); windows.modscan scans physical memory for 'MmLd' pool allocations, each holding
/// an entry right after the _POOL_HEADER, validates it and marks whether it is on the list.
/// </summary>
public static class WindowsModules
{
    private static readonly uint[] s_tags = [0x644C6D4D];     // "MmLd"

    /// <summary>Largest SizeOfImage a scanned entry may claim (1 GiB).</summary>
    public const uint MaxImageSize = 1 << 30;

    /// <summary>Longest module name or path accepted from a scanned entry, in bytes.</summary>
    public const int MaxNameBytes = 1024;

    /// <summary>
    /// The modules on PsLoadedModuleList in load order. Stops, with a note, at a pointer that does not read or is not a
    /// kernel address, an entry seen before (a cycle not through the head), an entry that does not read or
    /// <see cref="AnalysisLimits.MaxKernelModules"/>.
    /// </summary>
    public static (List<WindowsModule> Modules, List<string> Notes) List(WindowsKernel kernel, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var layout = Layout.From(kernel.Types);
        var modules = new List<WindowsModule>();
        var notes = new List<string>();
        if (!kernel.TryGetSymbol("PsLoadedModuleList", out ulong head))
        {
            throw new KernelNotFoundException($"{kernel.Types.Source} has no PsLoadedModuleList symbol");
        }
        AddressSpace space = kernel.Kernel;
        ListWalk walk = KernelLists.Circular(space, head, "modules", AnalysisLimits.Default.MaxKernelModules, KernelLists.IsKernelAddress,
            cancellationToken: ct);
        byte[] entry = new byte[layout.Extent];
        foreach (ulong link in walk.Entries)
        {
            ulong address = link - (ulong)layout.Links;
            if (space.Read(address, entry) != entry.Length)
            {
                space.TryTranslate(address, out _, out TranslationFault fault);
                notes.Add($"module entry 0x{address:X} does not read ({fault}) after {modules.Count} modules; walk stopped");
                return (modules, notes);
            }
            modules.Add(new WindowsModule(address, U64(entry, layout.DllBase), BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(layout.SizeOfImage)),
                WindowsMemoryReader.UnicodeString(space, address + (ulong)layout.BaseDllName, layout.Unicode),
                WindowsMemoryReader.UnicodeString(space, address + (ulong)layout.FullDllName, layout.Unicode)));
        }
        if (walk.Note is not null)
        {
            notes.Add(walk.Note);
        }
        return (modules, notes);
    }

    /// <summary>windows.modules.</summary>
    public static RowsReport<WindowsModule> Modules(WindowsKernel kernel, CancellationToken ct = default)
    {
        (List<WindowsModule> modules, List<string> notes) = List(kernel, ct);
        return new RowsReport<WindowsModule>("windows.modules", modules, notes);
    }

    /// <summary>windows.modscan: 'MmLd' allocations holding a plausible entry, with OnList against PsLoadedModuleList.</summary>
    /// <param name="kernel">The located kernel.</param>
    /// <param name="ct">Cancels the scan.</param>
    /// <param name="progress">Receives the pool scan's progress, or null.</param>
    /// <param name="degreeOfParallelism">Scan threads; null for the default (the rows do not depend on it).</param>
    public static RowsReport<WindowsScannedModule> ModScan(WindowsKernel kernel, CancellationToken ct = default, IProgressSink? progress = null, int? degreeOfParallelism = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var layout = Layout.From(kernel.Types);
        var notes = new List<string>();
        (List<WindowsModule> listed, List<string> listNotes) = List(kernel, ct);
        notes.AddRange(listNotes.Select(n => "modules: " + n));
        var onList = new HashSet<ulong>();
        foreach (WindowsModule m in listed)
        {
            if (kernel.Kernel.TryTranslate(m.Offset, out Translation translation, out _))
            {
                onList.Add(translation.PhysicalAddress);
            }
        }
        int poolHeader = kernel.Types.RequiredSize("_POOL_HEADER");
        IPhysicalMemory physical = kernel.Physical;
        byte[] entry = new byte[layout.Extent];
        var rows = new List<WindowsScannedModule>();
        int rejected = 0;
        foreach ((ulong pool, _) in WindowsPoolScanner.ScanPool(physical, kernel.Types, s_tags, poolHeader + layout.Extent, ct, progress, degreeOfParallelism))
        {
            ulong candidate = pool + (ulong)poolHeader;
            if (physical.Read(candidate, entry) != entry.Length || !TryValidate(kernel.Kernel, layout, entry, out string? name, out string? path))
            {
                rejected++;
                continue;
            }
            if (rows.Count >= AnalysisLimits.Default.MaxKernelModules)
            {
                notes.Add($"more than {AnalysisLimits.Default.MaxKernelModules} modules; scan stopped");
                break;
            }
            rows.Add(new WindowsScannedModule(candidate, U64(entry, layout.DllBase), BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(layout.SizeOfImage)),
                name!, path, onList.Contains(candidate)));
        }
        if (rejected > 0)
        {
            notes.Add($"{rejected} 'MmLd' allocations did not hold a plausible module entry");
        }
        return new RowsReport<WindowsScannedModule>("windows.modscan", rows, notes);
    }

    /// <summary>
    /// A scanned entry is a module when DllBase is a page-aligned kernel address, SizeOfImage is between one page and
    /// <see cref="MaxImageSize"/>, the list links are kernel addresses, BaseDllName reads as printable text and
    /// FullDllName, when present, reads too.
    /// </summary>
    private static bool TryValidate(AddressSpace space, Layout l, byte[] entry, out string? name, out string? path)
    {
        name = path = null;
        ulong dllBase = U64(entry, l.DllBase);
        uint size = BinaryPrimitives.ReadUInt32LittleEndian(entry.AsSpan(l.SizeOfImage));
        if (!WindowsObjectManager.IsKernelPointer(dllBase) || (dllBase & 0xFFF) != 0 || size < 0x1000 || size > MaxImageSize
            || !WindowsObjectManager.IsKernelPointer(U64(entry, l.Links)) || !WindowsObjectManager.IsKernelPointer(U64(entry, l.Links + 8)))
        {
            return false;
        }
        name = Text(space, entry, l.BaseDllName, l.Unicode);
        if (string.IsNullOrEmpty(name))
        {
            return false;
        }
        path = Text(space, entry, l.FullDllName, l.Unicode);
        return path is not null || BinaryPrimitives.ReadUInt16LittleEndian(entry.AsSpan(l.FullDllName + l.Unicode.Length)) == 0;
    }

    /// <summary>
    /// A _UNICODE_STRING inside the scanned entry's bytes (read from physical memory, so not through
    /// <see cref="WindowsMemoryReader"/>) with a bounded, printable text in a kernel buffer (null otherwise).
    /// </summary>
    private static string? Text(AddressSpace space, byte[] entry, int offset, UnicodeStringLayout unicode)
    {
        int length = BinaryPrimitives.ReadUInt16LittleEndian(entry.AsSpan(offset + unicode.Length));
        ulong buffer = U64(entry, offset + unicode.Buffer);
        if (length > MaxNameBytes || (length > 0 && !WindowsObjectManager.IsKernelPointer(buffer)))
        {
            return null;
        }
        byte[] text = new byte[length];
        if (length % 2 != 0 || space.Read(buffer, text) != length)
        {
            return null;
        }
        string value = System.Text.Encoding.Unicode.GetString(text);
        return value.Any(char.IsControl) ? null : value;
    }

    private static ulong U64(byte[] b, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(b.AsSpan(offset));

    /// <summary>ISF offsets of the module entry.</summary>
    private sealed record Layout(int Links, int DllBase, int SizeOfImage, int FullDllName, int BaseDllName, UnicodeStringLayout Unicode)
    {
        /// <summary>Bytes of the entry read (through both names' Length and Buffer).</summary>
        public int Extent => Math.Max(Math.Max(FullDllName, BaseDllName) + Math.Max(Unicode.Length + 2, Unicode.Buffer + 8),
            Math.Max(DllBase + 8, SizeOfImage + 4));

        public static Layout From(TypeModel t)
        {
            string s = t.FindStruct("_KLDR_DATA_TABLE_ENTRY") is not null ? "_KLDR_DATA_TABLE_ENTRY" : "_LDR_DATA_TABLE_ENTRY";
            return new Layout(t.RequiredOffset(s, "InLoadOrderLinks"), t.RequiredOffset(s, "DllBase"), t.RequiredOffset(s, "SizeOfImage"),
                t.RequiredOffset(s, "FullDllName"), t.RequiredOffset(s, "BaseDllName"), UnicodeStringLayout.Of(t));
        }
    }
}
