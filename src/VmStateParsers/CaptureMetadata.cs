namespace CloudMem.VmStateParsers;

/// <summary>The register state of one CPU as a capture file recorded it.</summary>
/// <param name="Index">CPU number in file order.</param>
/// <param name="Source">Where it came from, e.g. "ELF NT_PRSTATUS" or "QEMU CPU state".</param>
/// <param name="Registers">Register name (lower case) to value, in the file's order.</param>
public sealed record CpuState(int Index, string Source, IReadOnlyList<KeyValuePair<string, ulong>> Registers)
{
    /// <summary>Looks a register up by name.</summary>
    public bool TryGet(string name, out ulong value)
    {
        foreach (KeyValuePair<string, ulong> pair in Registers)
        {
            if (pair.Key == name)
            {
                value = pair.Value;
                return true;
            }
        }
        value = 0;
        return false;
    }
}

/// <summary>One key of a key-value tree a capture file carries (e.g. the Hyper-V storage container's keys).</summary>
/// <param name="Path">Full path, "/a/b/c"; same-named siblings (arrays) as "name[i]".</param>
/// <param name="Type">Value type as shown, e.g. "int", "string", "node".</param>
/// <param name="Value">The value as text (large binary values are described, not dumped).</param>
public sealed record MetadataKey(string Path, string Type, string Value);

/// <summary>What a capture file says about the captured machine, beyond its memory.</summary>
public sealed class CaptureMetadata
{
    /// <summary>Creates metadata for a format.</summary>
    public CaptureMetadata(string format) => Format = format;

    /// <summary>The format's name as users see it, e.g. "LiME" or "ELF core (QEMU dump-guest-memory)".</summary>
    public string Format { get; }

    /// <summary>Header fields worth showing, in file order (name, value as text).</summary>
    public List<KeyValuePair<string, string>> Properties { get; } = [];

    /// <summary>VMCOREINFO, when the file carries it.</summary>
    public VmcoreInfo? VmcoreInfo { get; set; }

    /// <summary>CPU states recorded in the file (may be empty).</summary>
    public List<CpuState> Cpus { get; } = [];

    /// <summary>The file's key tree, in listing order (empty for formats without one).</summary>
    public List<MetadataKey> KeyTree { get; } = [];

    /// <summary>Non-fatal problems found while opening (e.g. a truncated file whose runs were clipped).</summary>
    public List<string> Warnings { get; } = [];

    /// <summary>Adds a property.</summary>
    public void Add(string name, string value) => Properties.Add(new(name, value));

    /// <summary>Looks a property up by name.</summary>
    public string? Get(string name)
    {
        foreach (KeyValuePair<string, string> pair in Properties)
        {
            if (pair.Key == name)
            {
                return pair.Value;
            }
        }
        return null;
    }
}
