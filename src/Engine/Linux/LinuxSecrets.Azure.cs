using System.Text;

namespace CloudMem.Engine.Linux;

/// <summary>The Azure part of linux.secrets: shared access signatures and connection strings.</summary>
public static partial class LinuxSecrets
{
    private const int AzureMax = 4096;   // longest SAS query string or connection string we take

    /// <summary>Finds Azure SAS tokens and connection strings in <paramref name="data"/>; <paramref name="add"/> takes
    /// (offset, kind, length, redacted preview, full value).</summary>
    private static void FindAzure(ReadOnlySpan<byte> data, Action<int, SecretKind, int, string, string> add)
    {
        foreach (int sig in All(data, "sig="u8))
        {
            if (Sas(data, sig) is (int start, int length))
            {
                string token = Encoding.ASCII.GetString(data.Slice(start, length));
                add(start, SecretKind.AzureSasToken, length, RedactValue(token, '&', "sig"), token);
            }
        }
        foreach ((string key, int bytes) in new[] { ("AccountKey=", 64), ("SharedAccessKey=", 32) })
        {
            foreach (int at in All(data, Encoding.ASCII.GetBytes(key)))
            {
                if (ConnectionString(data, at, key.Length, bytes) is (int start, int length))
                {
                    string text = Encoding.ASCII.GetString(data.Slice(start, length));
                    add(start, SecretKind.AzureConnectionString, length, RedactValue(text, ';', key[..^1]), text);
                }
            }
        }
    }

    /// <summary>The text with the value of <paramref name="name"/> (between '=' and the next <paramref name="separator"/>) redacted.</summary>
    private static string RedactValue(string text, char separator, string name)
    {
        var parts = text.Split(separator);
        for (int i = 0; i < parts.Length; i++)
        {
            if (parts[i].StartsWith(name + "=", StringComparison.Ordinal))
            {
                parts[i] = name + "=" + Redact(parts[i][(name.Length + 1)..]);
            }
        }
        return string.Join(separator, parts);
    }

    private static bool IsQueryChar(byte b) => IsBase64(b) || b is (byte)'%' or (byte)'&' or (byte)'=' or (byte)':' or (byte)'.' or (byte)'-' or (byte)'_';

    /// <summary>
    /// A SAS query string around "sig=" at <paramref name="sig"/>: sig= starts a parameter, the query also has sv=, and the
    /// signature decodes (after URL-unescaping) to the 32 bytes of an HMAC-SHA256. Returns where the query starts and its length.
    /// </summary>
    private static (int Start, int Length)? Sas(ReadOnlySpan<byte> data, int sig)
    {
        if (sig == 0 || data[sig - 1] is not ((byte)'&' or (byte)'?'))
        {
            return null;
        }
        int start = sig;
        while (start > 0 && sig - start < AzureMax && data[start - 1] != '?' && IsQueryChar(data[start - 1]))
        {
            start--;
        }
        int end = sig + 4;
        while (end < data.Length && end - start < AzureMax && IsQueryChar(data[end]))
        {
            end++;
        }
        string query = Encoding.ASCII.GetString(data[start..end]);
        string[] parameters = query.Split('&');
        string? signature = parameters.FirstOrDefault(p => p.StartsWith("sig=", StringComparison.Ordinal))?[4..];
        if (signature is null || !parameters.Any(p => p.StartsWith("sv=", StringComparison.Ordinal)) || DecodedLength(Uri.UnescapeDataString(signature)) != 32)
        {
            return null;
        }
        return (start, end - start);
    }

    private static bool IsConnectionChar(byte b) => b > 0x20 && b < 0x7F && b is not ((byte)';' or (byte)'"' or (byte)'\'' or (byte)'<' or (byte)'>' or (byte)'`');

    /// <summary>
    /// A connection string around the key at <paramref name="at"/>: ';'-separated Name=value segments before and after it, the key
    /// decoding to <paramref name="keyBytes"/> bytes. Returns where the first segment starts and the length.
    /// </summary>
    private static (int Start, int Length)? ConnectionString(ReadOnlySpan<byte> data, int at, int keyLength, int keyBytes)
    {
        if (at > 0 && IsConnectionChar(data[at - 1]))
        {
            return null;
        }
        int valueEnd = at + keyLength;
        while (valueEnd < data.Length && (IsBase64(data[valueEnd]) || data[valueEnd] == (byte)'='))
        {
            valueEnd++;
        }
        if (DecodedLength(Encoding.ASCII.GetString(data[(at + keyLength)..valueEnd])) != keyBytes)
        {
            return null;
        }
        // Earlier segments: "Name=value;" while each is one.
        int start = at;
        while (start > 0 && data[start - 1] == ';' && at - start < AzureMax)
        {
            int begin = start - 1;
            while (begin > 0 && IsConnectionChar(data[begin - 1]))
            {
                begin--;
            }
            if (!IsSegment(data[begin..(start - 1)]))
            {
                break;
            }
            start = begin;
        }
        // Later segments: ";Name=value" while each is one.
        int end = valueEnd;
        while (end < data.Length && data[end] == ';' && end - start < AzureMax)
        {
            int stop = end + 1;
            while (stop < data.Length && IsConnectionChar(data[stop]))
            {
                stop++;
            }
            if (!IsSegment(data[(end + 1)..stop]))
            {
                break;
            }
            end = stop;
        }
        return (start, end - start);
    }

    /// <summary>Name=value with a name of letters only.</summary>
    private static bool IsSegment(ReadOnlySpan<byte> segment)
    {
        int equals = segment.IndexOf((byte)'=');
        if (equals <= 0)
        {
            return false;
        }
        foreach (byte b in segment[..equals])
        {
            if (b is not ((>= (byte)'A' and <= (byte)'Z') or (>= (byte)'a' and <= (byte)'z')))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>The number of bytes a base64 text decodes to, or -1 when it is not base64.</summary>
    private static int DecodedLength(string text)
    {
        Span<byte> buffer = stackalloc byte[128];
        return text.Length is > 0 and <= 172 && System.Convert.TryFromBase64String(text, buffer, out int written) ? written : -1;
    }
}
