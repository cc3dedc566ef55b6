using CloudMem.Engine.Core;
using System.Globalization;

namespace CloudMem.Engine.Linux;

/// <summary>Run-time addresses of kernel symbols, from kallsyms in memory or from a symbol file plus the KASLR slide.</summary>
public interface IKernelSymbols
{
    /// <summary>Where the symbols came from.</summary>
    string Source { get; }

    /// <summary>How many symbols.</summary>
    int Count { get; }

    /// <summary>The run-time address of <paramref name="name"/>.</summary>
    bool TryGetAddress(string name, out ulong address);
}

/// <summary>Link-time addresses (System.map, an ISF) shifted by the KASLR virtual slide.</summary>
public sealed class SlidSymbols(IReadOnlyDictionary<string, ulong> linkTime, ulong slide, string source) : IKernelSymbols
{
    /// <inheritdoc />
    public string Source { get; } = source;

    /// <inheritdoc />
    public int Count => linkTime.Count;

    /// <summary>The slide applied.</summary>
    public ulong Slide { get; } = slide;

    /// <summary>Every symbol at its run-time address (unordered).</summary>
    public IEnumerable<(string Name, ulong Address)> All => linkTime.Select(kv => (kv.Key, kv.Value + Slide));

    /// <inheritdoc />
    public bool TryGetAddress(string name, out ulong address)
    {
        bool found = linkTime.TryGetValue(name, out ulong link);
        address = found ? link + Slide : 0;
        return found;
    }

    /// <summary>Parses a System.map ("ffffffff81000000 T _text" per line); the first address of a name wins.</summary>
    public static Dictionary<string, ulong> ParseSystemMap(string path)
    {
        var symbols = new Dictionary<string, ulong>(StringComparer.Ordinal);
        int line = 0;
        foreach (string text in File.ReadLines(path))
        {
            line++;
            string[] parts = text.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length < 3 || !ulong.TryParse(parts[0], NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong address))
            {
                throw new KernelNotFoundException($"{path}: line {line} is not a System.map line (\"ADDRESS TYPE NAME\")");
            }
            symbols.TryAdd(parts[2], address);
        }
        if (symbols.Count < 100)
        {
            throw new KernelNotFoundException($"{path}: only {symbols.Count} symbols: Debian's /boot/System.map is a stub; the real one is in the kernel's -dbg package");
        }
        return symbols;
    }
}
