using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows;

/// <summary>A module on a PEB loader list.</summary>
/// <param name="Base">_LDR_DATA_TABLE_ENTRY.DllBase.</param>
/// <param name="FullName">FullDllName, or null when unreadable.</param>
/// <param name="BaseName">BaseDllName, or null when unreadable.</param>
public sealed record WindowsLoaderEntry(ulong Base, string? FullName, string? BaseName);

/// <summary>
/// What the VAD plugins need of a process's user half: its address space, PEB.ImageBaseAddress, the image path from
/// the process parameters, _EPROCESS.SectionBaseAddress and the three PEB loader lists (load, memory and
/// initialisation order). Reads never throw: what does not read is null or empty, with a note.
/// </summary>
public sealed class WindowsProcessImage
{
    /// <summary>Cap on entries followed on one loader list.</summary>
    public const int MaxModules = 10_000;

    private WindowsProcessImage(WindowsProcess process, AddressSpace space)
    {
        Process = process;
        Space = space;
    }

    /// <summary>The process (from the active process list).</summary>
    public WindowsProcess Process { get; }

    /// <summary>Its user address space.</summary>
    public AddressSpace Space { get; }

    /// <summary>_EPROCESS.Peb (0: no user space, e.g. System).</summary>
    public ulong Peb { get; private set; }

    /// <summary>PEB.ImageBaseAddress, or null when the PEB does not read.</summary>
    public ulong? ImageBase { get; private set; }

    /// <summary>_EPROCESS.SectionBaseAddress (kernel memory: what the image section was mapped at).</summary>
    public ulong? SectionBase { get; private set; }

    /// <summary>ProcessParameters.ImagePathName, or null.</summary>
    public string? ImagePath { get; private set; }

    /// <summary>InLoadOrderModuleList.</summary>
    public List<WindowsLoaderEntry> LoadOrder { get; } = [];

    /// <summary>InMemoryOrderModuleList.</summary>
    public List<WindowsLoaderEntry> MemoryOrder { get; } = [];

    /// <summary>InInitializationOrderModuleList.</summary>
    public List<WindowsLoaderEntry> InitOrder { get; } = [];

    /// <summary>Reads the process's PEB and loader lists; notes go to <paramref name="notes"/>.</summary>
    public static WindowsProcessImage Read(WindowsKernel kernel, WindowsVads vads, WindowsProcess process, List<string> notes, bool lists = true)
    {
        TypeModel t = kernel.Types;
        var image = new WindowsProcessImage(process, kernel.ProcessSpace(process.DirectoryTableBase));
        AddressSpace k = kernel.Kernel;
        if (t.TryGetOffset("_EPROCESS", "SectionBaseAddress", out int sectionOff) && k.TryReadUInt64(process.Address + (ulong)sectionOff, out ulong section))
        {
            image.SectionBase = section;
        }
        if (!t.TryGetOffset("_EPROCESS", "Peb", out int pebOff) || !k.TryReadUInt64(process.Address + (ulong)pebOff, out ulong peb) || peb == 0)
        {
            return image;
        }
        image.Peb = peb;
        AddressSpace user = image.Space;
        if (!t.TryGetOffset("_PEB", "ImageBaseAddress", out int baseOff) || !user.TryReadUInt64(peb + (ulong)baseOff, out ulong imageBase))
        {
            notes.Add($"pid {process.Pid}: PEB at 0x{peb:X} does not read");
            return image;
        }
        image.ImageBase = imageBase;
        if (t.TryGetOffset("_PEB", "ProcessParameters", out int paramsOff) && user.TryReadUInt64(peb + (ulong)paramsOff, out ulong parameters) && parameters != 0
            && t.TryGetOffset("_RTL_USER_PROCESS_PARAMETERS", "ImagePathName", out int pathOff))
        {
            image.ImagePath = vads.ReadUnicodeString(user, parameters + (ulong)pathOff);
        }
        if (lists && t.TryGetOffset("_PEB", "Ldr", out int ldrOff) && user.TryReadUInt64(peb + (ulong)ldrOff, out ulong ldr) && ldr != 0)
        {
            Walk(t, vads, user, process.Pid, ldr, "InLoadOrderModuleList", "InLoadOrderLinks", image.LoadOrder, notes);
            Walk(t, vads, user, process.Pid, ldr, "InMemoryOrderModuleList", "InMemoryOrderLinks", image.MemoryOrder, notes);
            Walk(t, vads, user, process.Pid, ldr, "InInitializationOrderModuleList", "InInitializationOrderLinks", image.InitOrder, notes);
        }
        return image;
    }

    private static void Walk(TypeModel t, WindowsVads vads, AddressSpace user, long pid, ulong ldr, string headName, string linkName,
        List<WindowsLoaderEntry> into, List<string> notes)
    {
        if (!t.TryGetOffset("_PEB_LDR_DATA", headName, out int headOff) || !t.TryGetOffset("_LDR_DATA_TABLE_ENTRY", linkName, out int linkOff)
            || !t.TryGetOffset("_LDR_DATA_TABLE_ENTRY", "DllBase", out int baseOff)
            || !t.TryGetOffset("_LDR_DATA_TABLE_ENTRY", "FullDllName", out int fullOff)
            || !t.TryGetOffset("_LDR_DATA_TABLE_ENTRY", "BaseDllName", out int nameOff))
        {
            notes.Add($"pid {pid}: the symbols lack the {headName} layout");
            return;
        }
        ulong head = ldr + (ulong)headOff;
        if (!user.TryReadUInt64(head, out ulong next))
        {
            notes.Add($"pid {pid}: {headName} at 0x{head:X} does not read");
            return;
        }
        var seen = new HashSet<ulong> { head };
        while (next != head)
        {
            if (!seen.Add(next))
            {
                notes.Add($"pid {pid}: {headName} cycles at 0x{next:X} after {into.Count} entries; walk stopped");
                return;
            }
            if (into.Count >= MaxModules)
            {
                notes.Add($"pid {pid}: more than {MaxModules} entries on {headName}; walk stopped");
                return;
            }
            ulong entry = next - (ulong)linkOff;
            if (!user.TryReadUInt64(entry + (ulong)baseOff, out ulong dllBase) || !user.TryReadUInt64(next, out ulong following))
            {
                notes.Add($"pid {pid}: bad {headName} pointer 0x{next:X} after {into.Count} entries; walk stopped");
                return;
            }
            into.Add(new WindowsLoaderEntry(dllBase, vads.ReadUnicodeString(user, entry + (ulong)fullOff), vads.ReadUnicodeString(user, entry + (ulong)nameOff)));
            next = following;
        }
    }
}
