using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows;

/// <summary>
/// What the VAD plugins need of a process's user half: its address space, PEB.ImageBaseAddress, the image path from
/// the process parameters, _EPROCESS.SectionBaseAddress and the three PEB loader lists (load, memory and
/// initialisation order). Reads never throw: what does not read is null or empty, with a note.
/// </summary>
public sealed class WindowsProcessImage
{
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
    public List<WindowsLoadedModule> LoadOrder { get; } = [];

    /// <summary>InMemoryOrderModuleList.</summary>
    public List<WindowsLoadedModule> MemoryOrder { get; } = [];

    /// <summary>InInitializationOrderModuleList.</summary>
    public List<WindowsLoadedModule> InitOrder { get; } = [];

    /// <summary>Reads the process's PEB and loader lists; notes go to <paramref name="notes"/>.</summary>
    public static WindowsProcessImage Read(WindowsKernel kernel, WindowsProcess process, List<string> notes, bool lists = true, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(process);
        ArgumentNullException.ThrowIfNull(notes);
        TypeModel t = kernel.Types;
        var image = new WindowsProcessImage(process, kernel.ProcessSpace(process.Dtb));
        AddressSpace k = kernel.Kernel;
        if (t.TryGetOffset("_EPROCESS", "SectionBaseAddress", out int sectionOff) && k.TryReadUInt64(process.Offset + (ulong)sectionOff, out ulong section))
        {
            image.SectionBase = section;
        }
        if (!t.TryGetOffset("_EPROCESS", "Peb", out int pebOff) || !k.TryReadUInt64(process.Offset + (ulong)pebOff, out ulong peb) || peb == 0)
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
            image.ImagePath = WindowsMemoryReader.UnicodeString(user, parameters + (ulong)pathOff, UnicodeStringLayout.Of(t));
        }
        if (lists)
        {
            // The one loader-list walker (WindowsPeb) serves dlllist, ldrmodules and the dumps alike; it reads the PEB and Ldr once.
            (List<WindowsLoadedModule>[] modules, List<string> listNotes) = WindowsPeb.LoaderLists(kernel, process, Enum.GetValues<LoaderList>(), ct);
            image.LoadOrder.AddRange(modules[(int)LoaderList.LoadOrder]);
            image.MemoryOrder.AddRange(modules[(int)LoaderList.MemoryOrder]);
            image.InitOrder.AddRange(modules[(int)LoaderList.InitializationOrder]);
            notes.AddRange(listNotes.Select(n => $"pid {process.Pid}: {n}"));
        }
        return image;
    }
}
