using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace CloudMem.ImageBuilder;

/// <summary>
/// Real regf hive files written by hivex (Debian's libwin-hivex-perl: <c>hivexregedit --merge</c>) from .reg text.
/// hivex edits an existing hive only, so the start is a minimal hive of our own (header, one bin, a root key and its
/// security cell); hivex writes every key and value. hivex cannot set class names (the boot key lives in four of
/// them), so <see cref="WithClassNames"/> appends one bin holding the class-name cells and points the key nodes at them.
/// </summary>
public static class RegistryHiveFiles
{
    private const int Header = 0x1000;

    /// <summary>The hivexregedit program found on PATH, or null.</summary>
    public static string? Hivexregedit => (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':')
        .Select(d => Path.Combine(d, "hivexregedit")).FirstOrDefault(File.Exists);

    /// <summary>A minimal regf file: header, one 4 KiB bin with the root key (no subkeys or values) and one sk cell.</summary>
    public static byte[] Minimal(string rootName)
    {
        byte[] hive = new byte[Header + 0x1000];
        Span<byte> bin = hive.AsSpan(Header);
        "hbin"u8.CopyTo(bin);
        BinaryPrimitives.WriteUInt32LittleEndian(bin[8..], 0x1000);
        int nk = 0x20, nkSize = Align8(4 + 0x4C + rootName.Length), sk = nk + nkSize;
        Span<byte> key = bin[(nk + 4)..];
        BinaryPrimitives.WriteInt32LittleEndian(bin[nk..], -nkSize);
        "nk"u8.CopyTo(key);
        BinaryPrimitives.WriteUInt16LittleEndian(key[2..], 0x2C);             // KEY_HIVE_ENTRY | KEY_NO_DELETE | KEY_COMP_NAME
        BinaryPrimitives.WriteInt64LittleEndian(key[4..], new DateTime(2024, 7, 1, 8, 0, 0, DateTimeKind.Utc).ToFileTimeUtc());
        foreach (int field in new[] { 0x10, 0x1C, 0x20, 0x28, 0x30 })
        {
            BinaryPrimitives.WriteUInt32LittleEndian(key[field..], 0xFFFFFFFF);
        }
        BinaryPrimitives.WriteUInt32LittleEndian(key[0x2C..], (uint)sk);
        BinaryPrimitives.WriteUInt16LittleEndian(key[0x48..], (ushort)rootName.Length);
        Encoding.ASCII.GetBytes(rootName).CopyTo(key[0x4C..]);
        // sk: self-linked, one reference, an empty self-relative security descriptor.
        byte[] descriptor = [1, 0, 0x04, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        int skSize = Align8(4 + 0x14 + descriptor.Length);
        BinaryPrimitives.WriteInt32LittleEndian(bin[sk..], -skSize);
        Span<byte> security = bin[(sk + 4)..];
        "sk"u8.CopyTo(security);
        BinaryPrimitives.WriteUInt32LittleEndian(security[4..], (uint)sk);
        BinaryPrimitives.WriteUInt32LittleEndian(security[8..], (uint)sk);
        BinaryPrimitives.WriteUInt32LittleEndian(security[12..], 1);
        BinaryPrimitives.WriteUInt32LittleEndian(security[16..], (uint)descriptor.Length);
        descriptor.CopyTo(security[20..]);
        int free = sk + skSize;
        BinaryPrimitives.WriteInt32LittleEndian(bin[free..], 0x1000 - free);
        // Header: sequence numbers, time, version 1.5, primary file, flat format, root cell, hive length.
        Span<byte> h = hive;
        "regf"u8.CopyTo(h);
        BinaryPrimitives.WriteUInt32LittleEndian(h[4..], 1);
        BinaryPrimitives.WriteUInt32LittleEndian(h[8..], 1);
        BinaryPrimitives.WriteInt64LittleEndian(h[12..], new DateTime(2024, 7, 1, 8, 0, 0, DateTimeKind.Utc).ToFileTimeUtc());
        BinaryPrimitives.WriteUInt32LittleEndian(h[0x14..], 1);
        BinaryPrimitives.WriteUInt32LittleEndian(h[0x18..], 5);
        BinaryPrimitives.WriteUInt32LittleEndian(h[0x20..], 1);
        BinaryPrimitives.WriteUInt32LittleEndian(h[0x24..], (uint)nk);
        BinaryPrimitives.WriteUInt32LittleEndian(h[0x28..], 0x1000);
        BinaryPrimitives.WriteUInt32LittleEndian(h[0x2C..], 1);
        Checksum(hive);
        return hive;
    }

    /// <summary>Runs <c>hivexregedit --merge --prefix PREFIX</c> on a minimal hive with <paramref name="reg"/> and returns the hive.</summary>
    public static byte[] Merge(string rootName, string prefix, string reg)
    {
        string tool = Hivexregedit ?? throw new InvalidOperationException("hivexregedit not found (apt-get install libwin-hivex-perl)");
        string dir = Path.Combine(Path.GetTempPath(), "cloudmem-hive-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dir);
        try
        {
            string hive = Path.Combine(dir, "hive"), regFile = Path.Combine(dir, "merge.reg");
            File.WriteAllBytes(hive, Minimal(rootName));
            File.WriteAllText(regFile, reg, new UTF8Encoding(false));
            var start = new ProcessStartInfo(tool) { RedirectStandardError = true, RedirectStandardOutput = true };
            foreach (string arg in new[] { "--merge", "--prefix", prefix, hive, regFile })
            {
                start.ArgumentList.Add(arg);
            }
            using Process process = Process.Start(start)!;
            string error = process.StandardError.ReadToEnd();
            process.StandardOutput.ReadToEnd();
            process.WaitForExit();
            if (process.ExitCode != 0)
            {
                throw new InvalidOperationException($"hivexregedit --merge failed ({process.ExitCode}): {error.Split('\n')[0]}");
            }
            return File.ReadAllBytes(hive);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    /// <summary>
    /// Gives the keys named <paramref name="classes"/>' keys under a key named <paramref name="parent"/> the class names
    /// given: one new 4 KiB bin at the end holds the UTF-16 class cells; each nk's class offset and length point at its cell.
    /// </summary>
    public static byte[] WithClassNames(byte[] hive, string parent, IReadOnlyDictionary<string, string> classes)
    {
        ArgumentNullException.ThrowIfNull(hive);
        ArgumentNullException.ThrowIfNull(classes);
        int length = (int)BinaryPrimitives.ReadUInt32LittleEndian(hive.AsSpan(0x28));
        byte[] output = new byte[Header + length + 0x1000];
        hive.AsSpan(0, Header + length).CopyTo(output);
        Span<byte> bin = output.AsSpan(Header + length, 0x1000);
        "hbin"u8.CopyTo(bin);
        BinaryPrimitives.WriteUInt32LittleEndian(bin[4..], (uint)length);
        BinaryPrimitives.WriteUInt32LittleEndian(bin[8..], 0x1000);
        int at = 0x20;
        var done = new HashSet<string>();
        foreach ((int cell, string name) in KeyNodes(output, length))
        {
            if (!classes.TryGetValue(name, out string? className) || done.Contains(name) || NodeName(output, ParentOf(output, cell)) != parent)
            {
                continue;
            }
            byte[] text = Encoding.Unicode.GetBytes(className);
            int size = Align8(4 + text.Length);
            BinaryPrimitives.WriteInt32LittleEndian(bin[at..], -size);
            text.CopyTo(bin[(at + 4)..]);
            Span<byte> nk = output.AsSpan(Header + cell + 4);
            BinaryPrimitives.WriteUInt32LittleEndian(nk[0x30..], (uint)(length + at));
            BinaryPrimitives.WriteUInt16LittleEndian(nk[0x4A..], (ushort)text.Length);
            at += size;
            done.Add(name);
        }
        if (done.Count != classes.Count)
        {
            throw new InvalidOperationException($"keys not found under '{parent}': {string.Join(", ", classes.Keys.Except(done))}");
        }
        BinaryPrimitives.WriteInt32LittleEndian(bin[at..], 0x1000 - at);
        BinaryPrimitives.WriteUInt32LittleEndian(output.AsSpan(0x28), (uint)(length + 0x1000));
        Checksum(output);
        return output;
    }

    private static IEnumerable<(int Cell, string Name)> KeyNodes(byte[] hive, int length)
    {
        for (int bin = 0; bin < length;)
        {
            int binSize = (int)BinaryPrimitives.ReadUInt32LittleEndian(hive.AsSpan(Header + bin + 8));
            for (int cell = bin + 0x20; cell < bin + binSize;)
            {
                int size = BinaryPrimitives.ReadInt32LittleEndian(hive.AsSpan(Header + cell));
                if (size == 0)
                {
                    break;
                }
                if (size < 0 && hive[Header + cell + 4] == 'n' && hive[Header + cell + 5] == 'k')
                {
                    yield return (cell, NodeName(hive, cell));
                }
                cell += Math.Abs(size);
            }
            bin += binSize;
        }
    }

    private static int ParentOf(byte[] hive, int cell) => (int)BinaryPrimitives.ReadUInt32LittleEndian(hive.AsSpan(Header + cell + 4 + 0x10));

    private static string NodeName(byte[] hive, int cell)
    {
        if (cell < 0 || Header + cell + 4 + 0x4C > hive.Length)
        {
            return "";
        }
        Span<byte> nk = hive.AsSpan(Header + cell + 4);
        int length = BinaryPrimitives.ReadUInt16LittleEndian(nk[0x48..]);
        bool compressed = (BinaryPrimitives.ReadUInt16LittleEndian(nk[2..]) & 0x20) != 0;
        return compressed ? Encoding.Latin1.GetString(nk.Slice(0x4C, length)) : Encoding.Unicode.GetString(nk.Slice(0x4C, length));
    }

    /// <summary>The regf header checksum: XOR of its first 127 dwords.</summary>
    private static void Checksum(byte[] hive)
    {
        uint sum = 0;
        for (int i = 0; i < 0x1FC; i += 4)
        {
            sum ^= BinaryPrimitives.ReadUInt32LittleEndian(hive.AsSpan(i));
        }
        BinaryPrimitives.WriteUInt32LittleEndian(hive.AsSpan(0x1FC), sum);
    }

    private static int Align8(int n) => (n + 7) & ~7;
}

/// <summary>.reg text (Windows Registry Editor 5.00) for hivexregedit: every key's ancestors are written before it.</summary>
public sealed class RegText(string prefix)
{
    private readonly StringBuilder _text = new("Windows Registry Editor Version 5.00\r\n");
    private readonly HashSet<string> _keys = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Starts a key (and its missing ancestors).</summary>
    public RegText Key(string path)
    {
        string[] parts = path.Split('\\');
        for (int i = 1; i <= parts.Length; i++)
        {
            string key = string.Join('\\', parts[..i]);
            if (_keys.Add(key))
            {
                _text.Append(CultureInfo.InvariantCulture, $"\r\n[{prefix}\\{key}]\r\n");
            }
        }
        return this;
    }

    /// <summary>A REG_SZ value ("@" or "" for the default value).</summary>
    public RegText Sz(string name, string value) => Typed(name, 1, Encoding.Unicode.GetBytes(value + "\0"));

    /// <summary>A REG_DWORD value.</summary>
    public RegText Dword(string name, uint value)
    {
        _text.Append(CultureInfo.InvariantCulture, $"{Name(name)}=dword:{value:x8}\r\n");
        return this;
    }

    /// <summary>A value of any type as hex bytes (hex(type):..).</summary>
    public RegText Typed(string name, uint type, ReadOnlySpan<byte> data)
    {
        _text.Append(CultureInfo.InvariantCulture, $"{Name(name)}=hex({type:x}):{string.Join(",", data.ToArray().Select(b => b.ToString("x2", CultureInfo.InvariantCulture)))}\r\n");
        return this;
    }

    private static string Name(string name) => name.Length == 0 ? "@" : $"\"{name.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal)}\"";

    /// <inheritdoc />
    public override string ToString() => _text.ToString();
}
