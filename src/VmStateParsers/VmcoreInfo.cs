using System.Globalization;
using System.Text;

namespace CloudMem.VmStateParsers;

/// <summary>
/// The Linux VMCOREINFO text ("KEY=VALUE" lines) that kdump files and QEMU dumps carry.
/// Keys are kept verbatim, e.g. <c>SYMBOL(init_uts_ns)</c>, <c>OFFSET(list_head.next)</c>.
/// </summary>
public sealed class VmcoreInfo
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    private VmcoreInfo(List<KeyValuePair<string, string>> lines)
    {
        Entries = lines;
        foreach (KeyValuePair<string, string> line in lines)
        {
            _values[line.Key] = line.Value;
        }
    }

    /// <summary>The lines in file order.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Entries { get; }

    /// <summary>Parses the note text; lines without '=' and NUL padding are ignored.</summary>
    public static VmcoreInfo Parse(ReadOnlySpan<byte> text)
    {
        int nul = text.IndexOf((byte)0);
        if (nul >= 0)
        {
            text = text[..nul];
        }
        var lines = new List<KeyValuePair<string, string>>();
        foreach (string line in Encoding.ASCII.GetString(text).Split('\n'))
        {
            int eq = line.IndexOf('=');
            if (eq > 0)
            {
                lines.Add(new(line[..eq], line[(eq + 1)..].TrimEnd('\r')));
            }
        }
        return new VmcoreInfo(lines);
    }

    /// <summary>The raw value of a key.</summary>
    public string? this[string key] => _values.GetValueOrDefault(key);

    /// <summary>OSRELEASE, e.g. "6.1.0-56-amd64".</summary>
    public string? OsRelease => this["OSRELEASE"];

    /// <summary>The address of <c>SYMBOL(name)</c> (hex, no prefix).</summary>
    public bool TryGetSymbol(string name, out ulong address) => TryParseHex(this[$"SYMBOL({name})"], out address);

    /// <summary>KERNELOFFSET: the KASLR slide of the kernel image (hex).</summary>
    public bool TryGetKernelOffset(out ulong offset) => TryParseHex(this["KERNELOFFSET"], out offset);

    /// <summary>A <c>NUMBER(name)</c> (decimal, possibly negative, or 0x-prefixed hex).</summary>
    public bool TryGetNumber(string name, out long value)
    {
        string? text = this[$"NUMBER({name})"];
        value = 0;
        if (text is null)
        {
            return false;
        }
        if (text.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            bool ok = ulong.TryParse(text.AsSpan(2), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong hex);
            value = unchecked((long)hex);
            return ok;
        }
        return long.TryParse(text, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out value);
    }

    private static bool TryParseHex(string? text, out ulong value)
    {
        value = 0;
        if (text is null)
        {
            return false;
        }
        ReadOnlySpan<char> span = text.AsSpan().Trim();
        if (span.StartsWith("0x", StringComparison.OrdinalIgnoreCase))
        {
            span = span[2..];
        }
        return ulong.TryParse(span, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out value);
    }
}
