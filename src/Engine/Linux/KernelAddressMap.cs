namespace CloudMem.Engine.Linux;

/// <summary>Who owns a kernel address: the kernel's own text, its image outside text, a module (listed or hidden), or nothing known.</summary>
public enum KernelOwner
{
    /// <summary>Kernel text (_stext.._etext).</summary>
    KernelText,
    /// <summary>The kernel image outside its text (_text.._end): data, rodata, init.</summary>
    KernelImage,
    /// <summary>The core of a module on the module list.</summary>
    Module,
    /// <summary>The core of a module that is not on the module list (found through sysfs or the module-area scan).</summary>
    HiddenModule,
    /// <summary>In no module's range and not in the kernel image: the classic sign of code of a hidden module.</summary>
    NoModule,
}

/// <summary>
/// Resolves kernel addresses to a kernel symbol (kallsyms from memory, or the given symbol file) and to the module that
/// contains them, using every module LinuxHiddenModules sees (list, sysfs and the module-area scan) with its core range.
/// Built once per analysis; lookups are binary searches.
/// </summary>
public sealed class KernelAddressMap
{
    private readonly ulong[] _addresses;
    private readonly string[] _names;
    private readonly List<LinuxModuleView> _modules;
    private readonly IKernelSymbols _symbols;

    private KernelAddressMap(IKernelSymbols symbols, ulong[] addresses, string[] names, List<LinuxModuleView> modules, ulong textStart, ulong textEnd, ulong imageStart, ulong imageEnd)
    {
        _symbols = symbols;
        _addresses = addresses;
        _names = names;
        _modules = modules;
        TextStart = textStart;
        TextEnd = textEnd;
        ImageStart = imageStart;
        ImageEnd = imageEnd;
    }

    /// <summary>_stext (0 when unknown).</summary>
    public ulong TextStart { get; }

    /// <summary>_etext (0 when unknown).</summary>
    public ulong TextEnd { get; }

    /// <summary>_text (0 when unknown).</summary>
    public ulong ImageStart { get; }

    /// <summary>_end (0 when unknown).</summary>
    public ulong ImageEnd { get; }

    /// <summary>The modules seen by any source, with their core ranges where readable.</summary>
    public IReadOnlyList<LinuxModuleView> Modules => _modules;

    /// <summary>Builds the map; what could not be resolved is added to <paramref name="notes"/>.</summary>
    public static KernelAddressMap Build(LinuxContext context, List<string> notes, CancellationToken ct = default)
    {
        IKernelSymbols symbols = context.Kernel.Symbols;
        // Aliases at one address: global symbols (upper-case nm type) name it before local ones.
        IEnumerable<(string Name, ulong Address, bool Local)> all = symbols switch
        {
            Kallsyms kallsyms => kallsyms.Symbols.Select(s => (s.Name, s.Address, char.IsAsciiLetterLower(s.Type))),
            SlidSymbols slid => slid.All.Select(s => (s.Name, s.Address, false)),
            _ => [],
        };
        ulong Symbol(string name) => symbols.TryGetAddress(name, out ulong a) ? a : 0;
        ulong imageStart = Symbol("_text"), imageEnd = Symbol("_end");
        ulong textStart = Symbol("_stext"), textEnd = Symbol("_etext");
        if (textStart == 0 || textEnd <= textStart)
        {
            notes.Add("symbols _stext/_etext not found: kernel text cannot be told from other code");
        }
        // Only symbols inside the kernel image name addresses (per-CPU offsets and absolute values are not places).
        var sorted = all.Where(s => imageStart == 0 || (s.Address >= imageStart && (imageEnd == 0 || s.Address <= imageEnd)))
            .OrderBy(s => s.Address).ThenBy(s => s.Local).ThenBy(s => s.Name, StringComparer.Ordinal).ToArray();
        (List<LinuxModuleView> modules, List<string> moduleNotes) = LinuxHiddenModules.Compare(context, ct);
        notes.AddRange(moduleNotes);
        return new KernelAddressMap(symbols, [.. sorted.Select(s => s.Address)], [.. sorted.Select(s => s.Name)], modules, textStart, textEnd, imageStart, imageEnd);
    }

    /// <summary>The address lies in kernel text.</summary>
    public bool InKernelText(ulong address) => TextEnd > TextStart && address >= TextStart && address < TextEnd;

    /// <summary>"name" or "name+0x1A" for an address in the kernel image, else null.</summary>
    /// <param name="address">The address.</param>
    /// <param name="preferPrefix">Among aliases at the symbol's address, the first one with this prefix wins
    /// (__x64_sys_ni_syscall and __ia32_sys_ni_syscall are one function).</param>
    public string? SymbolAt(ulong address, string? preferPrefix = null)
    {
        if (ImageStart != 0 && (address < ImageStart || (ImageEnd != 0 && address >= ImageEnd)))
        {
            return null;
        }
        int i = Array.BinarySearch(_addresses, address);
        i = i < 0 ? ~i - 1 : i;
        if (i < 0)
        {
            return null;
        }
        while (i > 0 && _addresses[i - 1] == _addresses[i])
        {
            i--;
        }
        int chosen = i;
        for (int j = i; preferPrefix is not null && j < _addresses.Length && _addresses[j] == _addresses[i]; j++)
        {
            if (_names[j].StartsWith(preferPrefix, StringComparison.Ordinal))
            {
                chosen = j;
                break;
            }
        }
        ulong offset = address - _addresses[chosen];
        return offset == 0 ? _names[chosen] : $"{_names[chosen]}+0x{offset:X}";
    }

    /// <summary>The first symbol address above <paramref name="address"/>, or null.</summary>
    public ulong? NextSymbolAfter(ulong address)
    {
        int i = Array.BinarySearch(_addresses, address);
        i = i < 0 ? ~i : i + 1;
        while (i < _addresses.Length && _addresses[i] <= address)
        {
            i++;
        }
        return i < _addresses.Length ? _addresses[i] : null;
    }

    /// <summary>The address of a symbol by name, or null.</summary>
    public ulong? SymbolAddress(string name) => _symbols.TryGetAddress(name, out ulong a) ? a : null;

    /// <summary>The module whose core contains the address (listed modules first), or null.</summary>
    public LinuxModuleView? ModuleAt(ulong address)
        => _modules.Where(m => m.Base is ulong b && m.Size is ulong s && address >= b && address - b < s)
            .OrderByDescending(m => m.InModuleList).FirstOrDefault();

    /// <summary>Who owns the address, with the module when there is one.</summary>
    public (KernelOwner Owner, LinuxModuleView? Module) OwnerOf(ulong address)
    {
        if (InKernelText(address))
        {
            return (KernelOwner.KernelText, null);
        }
        if (ImageStart != 0 && ImageEnd > ImageStart && address >= ImageStart && address < ImageEnd)
        {
            return (KernelOwner.KernelImage, null);
        }
        LinuxModuleView? module = ModuleAt(address);
        return module is null ? (KernelOwner.NoModule, null)
            : (module.InModuleList ? KernelOwner.Module : KernelOwner.HiddenModule, module);
    }
}
