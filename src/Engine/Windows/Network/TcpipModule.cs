using CloudMem.Engine.Core;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows.Network;

/// <summary>The kernel's version: NtMajorVersion/NtMinorVersion (KUSER_SHARED_DATA) and the build number.</summary>
/// <param name="Source">Where the build number was read (for messages).</param>
/// <param name="Major">NtMajorVersion.</param>
/// <param name="Minor">NtMinorVersion.</param>
/// <param name="Build">Kernel build number.</param>
public sealed record WindowsVersion(uint Major, uint Minor, uint Build, string Source)
{
    /// <summary>
    /// Reads the version: major and minor from KUSER_SHARED_DATA, the build from the kernel's NtBuildNumber variable,
    /// else KdVersionBlock's MinorVersion, else KUSER_SHARED_DATA.NtBuildNumber (Windows 10+).
    /// </summary>
    /// <exception cref="KernelNotFoundException">A value does not read (the message names it and its address).</exception>
    public static WindowsVersion Read(WindowsKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var reader = new WindowsMemoryReader(kernel.Kernel);
        ulong shared = WindowsInfo.KUserSharedData;
        int major = kernel.Types.RequiredOffset("_KUSER_SHARED_DATA", "NtMajorVersion");
        int minor = kernel.Types.RequiredOffset("_KUSER_SHARED_DATA", "NtMinorVersion");
        if (!reader.TryUInt32(shared + (ulong)major, out uint majorValue) || !reader.TryUInt32(shared + (ulong)minor, out uint minorValue))
        {
            throw new KernelNotFoundException($"the Windows version does not read: {reader.Describe("KUSER_SHARED_DATA")}");
        }
        if (kernel.TryGetSymbol("NtBuildNumber", out ulong at) && reader.TryUInt32(at, out uint build) && (build & 0xFFFF) != 0)
        {
            return new WindowsVersion(majorValue, minorValue, build & 0xFFFF, $"NtBuildNumber at 0x{at:X}");
        }
        if (kernel.TryGetSymbol("KdVersionBlock", out ulong kd) && kernel.Types.TryGetOffset("_DBGKD_GET_VERSION64", "MinorVersion", out int kdMinor)
            && reader.TryUInt16(kd + (ulong)kdMinor, out ushort kdBuild) && kdBuild != 0)
        {
            return new WindowsVersion(majorValue, minorValue, kdBuild, $"KdVersionBlock.MinorVersion at 0x{kd + (ulong)kdMinor:X}");
        }
        if (kernel.Types.TryGetOffset("_KUSER_SHARED_DATA", "NtBuildNumber", out int sharedBuild) && reader.TryUInt32(shared + (ulong)sharedBuild, out uint value) && value != 0)
        {
            return new WindowsVersion(majorValue, minorValue, value & 0xFFFF, "KUSER_SHARED_DATA.NtBuildNumber");
        }
        throw new KernelNotFoundException("the Windows build number does not read (NtBuildNumber, KdVersionBlock and KUSER_SHARED_DATA.NtBuildNumber tried)");
    }
}

/// <summary>
/// tcpip.sys as loaded in a capture: its module entry, the PDB its CodeView record names, and that PDB's symbols
/// (global addresses; Microsoft's public tcpip.pdb has no types for the endpoint structures), found through the same
/// <see cref="SymbolStore"/> (directories, per-user cache, opt-in symbol server) as the kernel's.
/// </summary>
public sealed class TcpipModule
{
    private TcpipModule(WindowsModule module, PeImageCandidate image, TypeModel symbols, string path)
    {
        Module = module;
        Image = image;
        Symbols = symbols;
        SymbolPath = path;
    }

    /// <summary>The module entry on PsLoadedModuleList.</summary>
    public WindowsModule Module { get; }

    /// <summary>The CodeView record (PDB name, GUID, age); its address field is the virtual image base.</summary>
    public PeImageCandidate Image { get; }

    /// <summary>tcpip's symbols (RVAs).</summary>
    public TypeModel Symbols { get; }

    /// <summary>The symbol file loaded.</summary>
    public string SymbolPath { get; }

    /// <summary>The virtual address of a tcpip global, or false when the table does not have it.</summary>
    public bool TryGetSymbol(string name, out ulong address)
    {
        bool found = Symbols.Symbols.TryGetValue(name, out ulong rva);
        address = found ? Module.Base + rva : 0;
        return found;
    }

    /// <summary>Finds tcpip.sys on the module list, reads its CodeView record and loads its symbols.</summary>
    /// <exception cref="KernelNotFoundException">One line: the module is not listed, its header does not read, or no
    /// table matches (then the PDB name, GUID, age and every path tried, as <c>symbols check</c> words it).</exception>
    public static TcpipModule Open(WindowsKernel kernel, SymbolStore store, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(store);
        (List<WindowsModule> modules, List<string> notes) = WindowsModules.List(kernel, ct);
        WindowsModule module = modules.FirstOrDefault(m => string.Equals(m.Name, "tcpip.sys", StringComparison.OrdinalIgnoreCase))
            ?? throw new KernelNotFoundException($"tcpip.sys is not on PsLoadedModuleList ({modules.Count} modules listed{(notes.Count > 0 ? "; " + string.Join("; ", notes) : "")})");
        if (!KernelImageScanner.TryReadMappedImage(kernel.Kernel, module.Base, out PeImageCandidate? image))
        {
            kernel.Kernel.TryTranslate(module.Base, out _, out var fault);
            throw new KernelNotFoundException($"tcpip.sys at 0x{module.Base:X}: no readable PE header with a CodeView RSDS record ({fault})");
        }
        SymbolLookup lookup = store.FindWindows(image.PdbName, image.Guid, image.Age, ct);
        var check = new SymbolCheckRow(module.Base, image.PdbName, image.Guid, image.Age, image.SizeOfImage,
            lookup.Found ? SymbolCheckStatus.Matched : SymbolCheckStatus.Missing, lookup.Path, null, null, null, lookup.Tried);
        if (!lookup.Found)
        {
            throw new KernelNotFoundException($"tcpip.sys at 0x{module.Base:X}: {check.Result}");
        }
        try
        {
            return new TcpipModule(module, image, store.LoadTypes(lookup.Path!, $"{image.PdbName} {image.Guid}-{image.Age}"), lookup.Path!);
        }
        catch (Exception e) when (e is SymbolFormatException or IOException or UnauthorizedAccessException)
        {
            throw new KernelNotFoundException($"tcpip.sys at 0x{module.Base:X}: {(check with { Status = SymbolCheckStatus.Unreadable, Problem = e.Message.ReplaceLineEndings(" ") }).Result}");
        }
    }
}
