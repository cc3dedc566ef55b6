using System.Runtime.CompilerServices;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Linux;

/// <summary>What kind of secret.</summary>
public enum SecretKind
{
    /// <summary>A PEM private key block (PKCS#1 RSA, SEC1 EC, DSA, PKCS#8, encrypted PKCS#8).</summary>
    PemPrivateKey,
    /// <summary>An OpenSSH private key block.</summary>
    OpenSshPrivateKey,
    /// <summary>An AWS access key id (AKIA/ASIA), with the 40-character secret access key found after it when there is one.</summary>
    AwsAccessKey,
    /// <summary>A JSON Web Token (header.payload.signature, the header decoding to JSON with "alg").</summary>
    Jwt,
    /// <summary>An Azure shared access signature (the query string with sv= and a sig= that decodes to a 32-byte HMAC).</summary>
    AzureSasToken,
    /// <summary>An Azure connection string with an AccountKey (64-byte storage key) or SharedAccessKey (32-byte key).</summary>
    AzureConnectionString,
}

/// <summary>A secret found in a process's memory (linux.secrets).</summary>
/// <param name="Pid">The process.</param>
/// <param name="Comm">Its task_struct.comm.</param>
/// <param name="Address">Where the secret starts in the process's address space.</param>
/// <param name="Mapping">The mapping that holds it ([heap], [stack], a file path, or "anonymous").</param>
/// <param name="Kind">What it is.</param>
/// <param name="Length">Its length in bytes (for an AWS pair: the key id's).</param>
/// <param name="Preview">A redacted preview: the kind's marker and the first few characters only.</param>
/// <param name="Value">The full value (for an AWS pair: "id secret"), only with --reveal; null otherwise.</param>
/// <param name="SecretAddress">AWS: where the paired secret access key is, null when none was found near the id.</param>
public sealed record LinuxSecret(int Pid, string Comm, [property: Hex] ulong Address, string Mapping, SecretKind Kind, int Length, string Preview,
    string? Value, [property: Hex] ulong? SecretAddress);

/// <summary>
/// linux.secrets: scans the readable memory of every user process for private keys, AWS access key pairs, JWTs, Azure
/// shared access signatures and Azure connection strings.
/// Pages not in the capture are skipped. Findings are redacted unless the caller asks for the values.
/// </summary>
public static partial class LinuxSecrets
{
    private const int Chunk = 1 << 20;
    private const int Overlap = 16 << 10;      // longest secret we match (an RSA-8192 PEM is about 6.5 KiB)
    private const int PemMax = 16 << 10;
    private const int AwsSecretWindow = 512;   // the secret access key follows its id within this many bytes
    private const int PreviewChars = 4;

    /// <summary>linux.secrets.</summary>
    public static RowsReport<LinuxSecret> Scan(LinuxContext context, ISet<int>? pids = null, bool reveal = false, CancellationToken ct = default)
    {
        (List<LinuxMapping> maps, List<string> notes) = LinuxMaps.List(context, pids, ct);
        var rows = new List<LinuxSecret>();
        var seen = new HashSet<ulong>(); // per process: cleared when the next process starts
        int current = -1;
        LinuxMalfind.ScanReadableMappings(context, maps, notes, (space, map) =>
        {
            if (map.Pid != current)
            {
                seen.Clear();
                current = map.Pid;
            }
            return ScanMapping(space, map, reveal, seen, rows, ct);
        }, ct);
        return new RowsReport<LinuxSecret>("linux.secrets", rows, notes);
    }

    /// <summary>Scans one mapping in chunks that overlap by the longest secret; returns the bytes present.</summary>
    private static ulong ScanMapping(AddressSpace space, LinuxMapping map, bool reveal, HashSet<ulong> seen, List<LinuxSecret> rows, CancellationToken ct)
    {
        byte[] buffer = new byte[Chunk + Overlap];
        ulong present = 0;
        for (ulong start = map.Start; start < map.End; start += Chunk)
        {
            ct.ThrowIfCancellationRequested();
            int length = (int)Math.Min((ulong)buffer.Length, map.End - start);
            bool any = false;
            for (int page = 0; page < length; page += 4096)
            {
                Span<byte> target = buffer.AsSpan(page, Math.Min(4096, length - page));
                if (space.TryTranslate(start + (ulong)page, out _, out _) && space.Read(start + (ulong)page, target) == target.Length)
                {
                    any = true;
                    present += page < Chunk ? (ulong)target.Length : 0;
                }
                else
                {
                    target.Clear();
                }
            }
            if (any)
            {
                Find(buffer.AsSpan(0, length), start, map, reveal, seen, rows);
            }
        }
        return present;
    }

    private static void Find(ReadOnlySpan<byte> data, ulong va, LinuxMapping map, bool reveal, HashSet<ulong> seen, List<LinuxSecret> rows)
    {
        void Add(int at, SecretKind kind, int length, string preview, string value, ulong? secretAddress)
        {
            if (seen.Add(va + (ulong)at))
            {
                rows.Add(new LinuxSecret(map.Pid, map.Comm, va + (ulong)at, map.Path.Length == 0 ? "anonymous" : map.Path, kind, length, preview,
                    reveal ? value : null, secretAddress));
            }
        }
        foreach (int at in All(data, "-----BEGIN "u8))
        {
            if (Pem(data[at..]) is (string label, int length))
            {
                string block = Encoding.ASCII.GetString(data.Slice(at, length));
                int body = block.IndexOf('\n', StringComparison.Ordinal) + 1;
                Add(at, label == "OPENSSH PRIVATE KEY" ? SecretKind.OpenSshPrivateKey : SecretKind.PemPrivateKey, length,
                    $"-----BEGIN {label}----- {Redact(block[body..].TrimStart())}", block, null);
            }
        }
        foreach (ReadOnlySpan<byte> prefix in new[] { "AKIA"u8.ToArray(), "ASIA"u8.ToArray() })
        {
            foreach (int at in All(data, prefix))
            {
                if (!IsAwsKeyId(data, at))
                {
                    continue;
                }
                string id = Encoding.ASCII.GetString(data.Slice(at, 20));
                int secret = AwsSecret(data, at + 20);
                string secretText = secret >= 0 ? Encoding.ASCII.GetString(data.Slice(secret, 40)) : "";
                Add(at, SecretKind.AwsAccessKey, 20, secret >= 0 ? $"{id[..8]}… + secret {Redact(secretText)}" : $"{id[..8]}… (no secret key nearby)",
                    secret >= 0 ? $"{id} {secretText}" : id, secret >= 0 ? va + (ulong)secret : null);
            }
        }
        foreach (int at in All(data, "eyJ"u8))
        {
            if (Jwt(data, at) is int length)
            {
                string token = Encoding.ASCII.GetString(data.Slice(at, length));
                Add(at, SecretKind.Jwt, length, $"{token[..token.IndexOf('.', StringComparison.Ordinal)]}.{Redact(token[(token.IndexOf('.', StringComparison.Ordinal) + 1)..])}", token, null);
            }
        }
        FindAzure(data, (at, kind, length, preview, value) => Add(at, kind, length, preview, value, null));
    }

    internal static string Redact(string text) => text.Length <= PreviewChars ? "…" : $"{text[..PreviewChars]}… ({text.Length} chars)";

    private static IEnumerable<int> All(ReadOnlySpan<byte> data, ReadOnlySpan<byte> needle)
    {
        var hits = new List<int>();
        int from = 0;
        while (from < data.Length)
        {
            int i = data[from..].IndexOf(needle);
            if (i < 0)
            {
                break;
            }
            hits.Add(from + i);
            from += i + 1;
        }
        return hits;
    }

    /// <summary>"-----BEGIN X PRIVATE KEY-----" ... "-----END X PRIVATE KEY-----": the label and the block's length.</summary>
    private static (string Label, int Length)? Pem(ReadOnlySpan<byte> data)
    {
        ReadOnlySpan<byte> rest = data["-----BEGIN "u8.Length..];
        int close = rest[..Math.Min(rest.Length, 64)].IndexOf("-----"u8);
        if (close <= 0)
        {
            return null;
        }
        string label = Encoding.ASCII.GetString(rest[..close]);
        if (!label.EndsWith("PRIVATE KEY", StringComparison.Ordinal) || label.Any(c => c is not (>= 'A' and <= 'Z' or ' ')))
        {
            return null;
        }
        byte[] end = Encoding.ASCII.GetBytes($"-----END {label}-----");
        int stop = data[..Math.Min(data.Length, PemMax)].IndexOf(end);
        return stop < 0 ? null : (label, stop + end.Length);
    }

    private static bool IsUpperAlnum(byte b) => b is (>= (byte)'A' and <= (byte)'Z') or (>= (byte)'0' and <= (byte)'9');

    private static bool IsBase64(byte b) => IsUpperAlnum(b) || b is (>= (byte)'a' and <= (byte)'z') or (byte)'/' or (byte)'+';

    /// <summary>AKIA/ASIA + 16 upper-case letters or digits, not inside a longer word.</summary>
    private static bool IsAwsKeyId(ReadOnlySpan<byte> data, int at)
    {
        if (at + 20 > data.Length || (at > 0 && IsBase64(data[at - 1])))
        {
            return false;
        }
        for (int i = at + 4; i < at + 20; i++)
        {
            if (!IsUpperAlnum(data[i]))
            {
                return false;
            }
        }
        return at + 20 == data.Length || !IsBase64(data[at + 20]);
    }

    /// <summary>The first run of exactly 40 base64 characters within the window after a key id, or -1.</summary>
    private static int AwsSecret(ReadOnlySpan<byte> data, int from)
    {
        int end = Math.Min(data.Length, from + AwsSecretWindow);
        int run = 0;
        for (int i = from; i <= end; i++)
        {
            if (i < end && IsBase64(data[i]))
            {
                run++;
                continue;
            }
            if (run == 40 && (i == data.Length || data[i] != '='))
            {
                return i - 40;
            }
            run = 0;
        }
        return -1;
    }

    private static bool IsBase64Url(byte b) => IsUpperAlnum(b) || b is (>= (byte)'a' and <= (byte)'z') or (byte)'-' or (byte)'_';

    /// <summary>header.payload.signature in base64url, each part at least 4 characters, the header decoding to JSON with "alg".</summary>
    private static int? Jwt(ReadOnlySpan<byte> data, int at)
    {
        if (at > 0 && IsBase64Url(data[at - 1]))
        {
            return null;
        }
        int i = at;
        int[] parts = new int[3];
        for (int part = 0; part < 3; part++)
        {
            int begin = i;
            while (i < data.Length && i - at < 16384 && IsBase64Url(data[i]))
            {
                i++;
            }
            parts[part] = i - begin;
            if (parts[part] < 4 || (part < 2 && (i >= data.Length || data[i] != '.')))
            {
                return null;
            }
            if (part < 2)
            {
                i++;
            }
        }
        string header = Encoding.ASCII.GetString(data.Slice(at, parts[0])).Replace('-', '+').Replace('_', '/');
        header = header.PadRight(header.Length + ((4 - (header.Length % 4)) % 4), '=');
        try
        {
            string json = Encoding.UTF8.GetString(System.Convert.FromBase64String(header));
            return json.StartsWith('{') && json.Contains("\"alg\"", StringComparison.Ordinal) ? i - at : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("linux.secrets",
            "Private keys (PEM, OpenSSH), AWS access key pairs, JWTs, Azure SAS tokens and connection strings in process memory, redacted (--reveal: in full)",
            TargetOs.Linux, PluginInputs.ProcessFilter | PluginInputs.RevealSecrets),
            (c, a, ct) => Scan(c.Linux(ct), a.IntPids, a.RevealSecrets, ct));
}
