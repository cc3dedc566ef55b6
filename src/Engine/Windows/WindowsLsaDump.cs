using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>What an LSA secret is, from its name (MS-LSAD 3.1.1.4 and common practice).</summary>
public enum LsaSecretKind
{
    /// <summary>A secret of no known kind (shown as hex).</summary>
    Other,
    /// <summary>DPAPI_SYSTEM: the machine's DPAPI machine and user keys.</summary>
    DpapiSystem,
    /// <summary>$MACHINE.ACC: the computer account's password (its NT hash opens the domain as the machine).</summary>
    MachineAccount,
    /// <summary>DefaultPassword: the Winlogon auto-logon password.</summary>
    DefaultPassword,
    /// <summary>_SC_&lt;service&gt;: the password of the account a service runs as.</summary>
    ServicePassword,
    /// <summary>NL$KM: the key that encrypts the cached domain logons.</summary>
    CachedLogonKey,
    /// <summary>ASPNET_WP_PASSWORD: the ASP.NET worker process account's password.</summary>
    AspNetPassword,
    /// <summary>L$_SQSA_&lt;SID&gt;: a local user's security questions and answers (JSON).</summary>
    SecurityQuestions,
}

/// <summary>An LSA secret (windows.lsadump): Policy\Secrets\NAME, its current and old values decrypted.</summary>
/// <param name="Name">The secret's key name (null: its key node did not read; the Doubt names the cell).</param>
/// <param name="Kind">What the name says it is.</param>
/// <param name="Current">CurrVal rendered for its kind (text; DPAPI machine/user keys; machine account NT hash; else hex),
/// a redacted preview unless --reveal; null when absent or unreadable.</param>
/// <param name="Old">OldVal, the same way.</param>
/// <param name="CurrentLength">Bytes of the decrypted current value.</param>
/// <param name="OldLength">Bytes of the decrypted old value.</param>
/// <param name="CurrentSet">When the current value was set (CupdTime).</param>
/// <param name="OldSet">When the old value was set (OupdTime).</param>
/// <param name="CurrentHex">The decrypted current value as hex, only with --reveal.</param>
/// <param name="OldHex">The decrypted old value as hex, only with --reveal.</param>
/// <param name="Doubt">Why a value is missing: which value of the secret did not read or decrypt, with the cell.</param>
public sealed record LsaSecretRow(string? Name, LsaSecretKind Kind, string? Current, string? Old, int? CurrentLength, int? OldLength,
    DateTimeOffset? CurrentSet, DateTimeOffset? OldSet, string? CurrentHex, string? OldHex, string? Doubt);

/// <summary>
/// windows.lsadump: the LSA secrets of the SECURITY hive. The boot key comes from the SYSTEM hive (as for hashdump);
/// the LSA key from Policy\PolEKList (Vista and later, AES) or Policy\PolSecretEncryptionKey (before Vista, RC4); each
/// secret's CurrVal and OldVal are decrypted with it (<see cref="LsaCrypto"/>). Every cell is read through the hive's map
/// in memory; a value whose cells are paged out is named in the row's Doubt, never guessed.
/// </summary>
public static class WindowsLsaDump
{
    private const int PreviewChars = 2;

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("windows.lsadump",
            "LSA secrets from the SECURITY hive (DPAPI_SYSTEM, $MACHINE.ACC, DefaultPassword, _SC_ service passwords, NL$KM), current and old values; redacted unless --reveal",
            TargetOs.Windows, PluginInputs.RevealSecrets),
            (c, a, ct) => LsaDump(c.Windows(ct), a.RevealSecrets, ct));

    /// <summary>The LSA key(s) of a SECURITY hive and its era.</summary>
    internal sealed record LsaKeys(RegistryHive Security, bool Vista, Guid Current, IReadOnlyDictionary<Guid, byte[]> Keys)
    {
        /// <summary>The key a Vista+ secret names (else the current key).</summary>
        public byte[] For(ReadOnlySpan<byte> value)
            => LsaCrypto.KeyId(value) is { } id && Keys.TryGetValue(id, out byte[]? key) ? key : Keys.GetValueOrDefault(Current) ?? Keys.Values.First();

        /// <summary>Decrypts one secret value of this era (null with the reason).</summary>
        public byte[]? Decrypt(byte[] value, out string? why)
            => Vista ? LsaCrypto.Decrypt(For(value), value, out why) : LsaCrypto.XpDecrypt(Keys[Current], value, out why);
    }

    /// <summary>
    /// Finds the SYSTEM and SECURITY hives, the boot key and the LSA key; null with notes saying what was missing.
    /// </summary>
    internal static LsaKeys? Keys(WindowsKernel kernel, List<string> notes, CancellationToken ct)
    {
        (List<RegistryHive> hives, List<string> listNotes) = RegistryHive.List(kernel, ct);
        notes.AddRange(listNotes);
        RegistryHive? system = WindowsHashDump.SystemHive(hives);
        RegistryHive? security = hives.FirstOrDefault(h => WindowsHashDump.Named(h, "SECURITY"))
            ?? hives.FirstOrDefault(h => RegistryKeys.Open(h, @"Policy\Secrets", out _, []) is not null);
        if (system is null || security is null)
        {
            notes.Add($"{(system is null ? "no SYSTEM hive (with a Select key)" : "")}{(system is null && security is null ? " and " : "")}" +
                      $"{(security is null ? "no SECURITY hive" : "")} among the {hives.Count} hives read");
            return null;
        }
        byte[]? bootKey = WindowsHashDump.BootKey(system, out string? why);
        if (bootKey is null)
        {
            notes.Add($"boot key: {why}");
            return null;
        }
        string hive = security.Name ?? "SECURITY";
        if (DefaultValue(security, @"Policy\PolEKList", out string? vistaProblem) is { } list)
        {
            byte[]? plain = LsaCrypto.Decrypt(bootKey, list, out why);
            if (plain is not null && LsaCrypto.KeyList(plain, out why) is { } keys)
            {
                return new LsaKeys(security, true, keys.Current, keys.Keys);
            }
            notes.Add($@"{hive}: Policy\PolEKList does not decrypt with the boot key: {why}");
            return null;
        }
        if (vistaProblem is not null && !vistaProblem.StartsWith("no subkey", StringComparison.Ordinal))
        {
            // The key is there but does not read: do not fall back to the pre-Vista key.
            notes.Add($@"{hive}: the LSA key Policy\PolEKList did not read ({vistaProblem}); no secret can be decrypted");
            return null;
        }
        if (DefaultValue(security, @"Policy\PolSecretEncryptionKey", out string? xpProblem) is { } xp)
        {
            if (LsaCrypto.XpLsaKey(bootKey, xp) is { } key)
            {
                return new LsaKeys(security, false, Guid.Empty, new Dictionary<Guid, byte[]> { [Guid.Empty] = key });
            }
            notes.Add($@"{hive}: Policy\PolSecretEncryptionKey of {xp.Length} bytes is too short");
            return null;
        }
        notes.Add($@"{hive}: no LSA key: Policy\PolEKList: {vistaProblem}; Policy\PolSecretEncryptionKey: {xpProblem}");
        return null;
    }

    /// <summary>The data of the default value of the key at <paramref name="path"/> (null with the reason: key missing, cell unreadable).</summary>
    internal static byte[]? DefaultValue(RegistryHive hive, string path, out string? problem)
    {
        var faults = new List<CellFault>();
        RegistryKey? key = Open(hive, path, faults, out problem);
        if (key is null)
        {
            return null;
        }
        RegistryValue? value = RegistryKeys.Values(hive, key, faults).FirstOrDefault(v => v.Name.Length == 0);
        problem = value is null ? (faults.Count > 0 ? faults[^1].ToString() : "no default value")
            : value.Data is null ? value.Fault?.ToString() ?? "data did not read" : null;
        return value?.Data;
    }

    /// <summary>The key at <paramref name="path"/>; when it is not found, the problem is the cell that did not read on the way, if any, else the missing name.</summary>
    internal static RegistryKey? Open(RegistryHive hive, string path, List<CellFault> faults, out string? problem)
    {
        int before = faults.Count;
        RegistryKey? key = RegistryKeys.Open(hive, path, out problem, faults);
        if (key is null && faults.Count > before)
        {
            problem = faults[^1].ToString();
        }
        return key;
    }

    /// <summary>windows.lsadump.</summary>
    public static RowsReport<LsaSecretRow> LsaDump(WindowsKernel kernel, bool reveal = false, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LsaSecretRow>();
        LsaKeys? keys = Keys(kernel, notes, ct);
        if (keys is null)
        {
            return new RowsReport<LsaSecretRow>("windows.lsadump", rows, notes);
        }
        RegistryHive security = keys.Security;
        var faults = new List<CellFault>();
        RegistryKey? secrets = Open(security, @"Policy\Secrets", faults, out string? problem);
        if (secrets is null)
        {
            notes.Add($@"{security.Name}: Policy\Secrets: {problem}");
            return new RowsReport<LsaSecretRow>("windows.lsadump", rows, notes);
        }
        foreach (RegistryKey secret in RegistryKeys.Subkeys(security, secrets, faults))
        {
            ct.ThrowIfCancellationRequested();
            if (secret.Name.Equals("NL$Control", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            rows.Add(Secret(keys, secret, reveal));
        }
        // Secrets whose key node did not read: their names are unknown, the cells are not.
        rows.AddRange(faults.Select(f => new LsaSecretRow(null, LsaSecretKind.Other, null, null, null, null, null, null, null, null,
            $@"a key under Policy\Secrets did not read: {f}")));
        notes.Add(keys.Vista ? "LSA key from Policy\\PolEKList (Vista+ AES-256)" : "LSA key from Policy\\PolSecretEncryptionKey (pre-Vista RC4; secrets DES)");
        return new RowsReport<LsaSecretRow>("windows.lsadump", rows, notes);
    }

    private static LsaSecretRow Secret(LsaKeys keys, RegistryKey secret, bool reveal)
    {
        RegistryHive hive = keys.Security;
        var faults = new List<CellFault>();
        var doubts = new List<string>();
        Dictionary<string, RegistryKey> parts = RegistryKeys.Subkeys(hive, secret, faults)
            .GroupBy(k => k.Name, StringComparer.OrdinalIgnoreCase).ToDictionary(g => g.Key, g => g.First(), StringComparer.OrdinalIgnoreCase);
        doubts.AddRange(faults.Select(f => $"a subkey did not read: {f}"));
        LsaSecretKind kind = KindOf(secret.Name);
        byte[]? current = Value(keys, parts, "CurrVal", doubts), old = Value(keys, parts, "OldVal", doubts);
        DateTimeOffset? Time(string name)
        {
            string path = $@"Policy\Secrets\{secret.Name}\{name}";
            return parts.ContainsKey(name) && DefaultValue(hive, path, out _) is { Length: >= 8 } t
                ? RegistryKeys.FileTime(BinaryPrimitives.ReadInt64LittleEndian(t)) : null;
        }
        return new LsaSecretRow(secret.Name, kind, current is null ? null : Render(kind, current, reveal), old is null ? null : Render(kind, old, reveal),
            current?.Length, old?.Length, Time("CupdTime"), Time("OupdTime"),
            reveal && current is not null ? Hex(current) : null, reveal && old is not null ? Hex(old) : null,
            doubts.Count > 0 ? string.Join("; ", doubts) : null);
    }

    /// <summary>One decrypted value (null when absent, or unreadable with a doubt).</summary>
    private static byte[]? Value(LsaKeys keys, Dictionary<string, RegistryKey> parts, string name, List<string> doubts)
    {
        if (!parts.TryGetValue(name, out RegistryKey? key))
        {
            return null;
        }
        var faults = new List<CellFault>();
        RegistryValue? value = RegistryKeys.Values(keys.Security, key, faults).FirstOrDefault(v => v.Name.Length == 0);
        if (value?.Data is not { } data)
        {
            doubts.Add($"{name} did not read: {value?.Fault?.ToString() ?? (faults.Count > 0 ? faults[0].ToString() : "no default value")}");
            return null;
        }
        if (data.Length == 0)
        {
            return [];
        }
        byte[]? plain = keys.Decrypt(data, out string? why);
        if (plain is null)
        {
            doubts.Add($"{name} does not decrypt: {why}");
        }
        return plain;
    }

    /// <summary>The kind of the secret named <paramref name="name"/>.</summary>
    public static LsaSecretKind KindOf(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        string upper = name.ToUpperInvariant();
        return upper switch
        {
            _ when upper.StartsWith("DPAPI_SYSTEM", StringComparison.Ordinal) => LsaSecretKind.DpapiSystem,
            _ when upper.StartsWith("$MACHINE.ACC", StringComparison.Ordinal) => LsaSecretKind.MachineAccount,
            _ when upper.StartsWith("DEFAULTPASSWORD", StringComparison.Ordinal) => LsaSecretKind.DefaultPassword,
            _ when upper.StartsWith("_SC_", StringComparison.Ordinal) => LsaSecretKind.ServicePassword,
            _ when upper.StartsWith("NL$KM", StringComparison.Ordinal) => LsaSecretKind.CachedLogonKey,
            _ when upper.StartsWith("ASPNET_WP_PASSWORD", StringComparison.Ordinal) => LsaSecretKind.AspNetPassword,
            _ when upper.StartsWith("L$_SQSA_", StringComparison.Ordinal) => LsaSecretKind.SecurityQuestions,
            _ => LsaSecretKind.Other,
        };
    }

    /// <summary>
    /// A decrypted secret as text for its kind: passwords as UTF-16 text, DPAPI_SYSTEM as its two keys, $MACHINE.ACC as the
    /// NT hash of its password, others as hex; without <paramref name="reveal"/> only the first characters and the length.
    /// </summary>
    public static string Render(LsaSecretKind kind, byte[] secret, bool reveal)
    {
        ArgumentNullException.ThrowIfNull(secret);
        string Show(string text) => reveal ? text : Redact(text);
        return kind switch
        {
            LsaSecretKind.DefaultPassword or LsaSecretKind.ServicePassword or LsaSecretKind.AspNetPassword or LsaSecretKind.SecurityQuestions
                => Show(Encoding.Unicode.GetString(secret, 0, secret.Length & ~1)),
            LsaSecretKind.DpapiSystem when secret.Length >= 44
                => $"machinekey:{Show(Hex(secret.AsSpan(4, 20)))} userkey:{Show(Hex(secret.AsSpan(24, 20)))}",
            LsaSecretKind.MachineAccount => $"nthash:{Show(Hex(Md4.Hash(secret)))}",
            _ => Show(Hex(secret)),
        };
    }

    private static string Redact(string text) => text.Length <= PreviewChars * 2 ? $"… ({text.Length} chars)" : $"{text[..PreviewChars]}… ({text.Length} chars)";

    internal static string Hex(ReadOnlySpan<byte> data) => System.Convert.ToHexString(data).ToLowerInvariant();
}
