using System.Globalization;
using System.Text.RegularExpressions;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Aws;

/// <summary>One uploaded part as the guest reported it.</summary>
public sealed record GuestPart(int Number, string ETag, long Bytes);

/// <summary>
/// The <c>CLOUDMEM_*</c> lines of the guest script's output: parts (number, ETag, bytes), the result (total bytes,
/// SHA-256, part count), MemTotal, the tool hash it checked, retries and an error.
/// </summary>
public sealed partial class GuestReport
{
    /// <summary>Parts in the order reported.</summary>
    public List<GuestPart> Parts { get; } = [];

    /// <summary>Retry lines ("part N attempt K curl=RC").</summary>
    public List<string> Retries { get; } = [];

    /// <summary>Bytes sent.</summary>
    public long? TotalBytes { get; private set; }

    /// <summary>SHA-256 of the whole image as the guest streamed it.</summary>
    public string? Sha256 { get; private set; }

    /// <summary>Parts the guest says it sent.</summary>
    public int? PartCount { get; private set; }

    /// <summary>MemTotal (bytes) the guest reported.</summary>
    public long? MemTotal { get; private set; }

    /// <summary>SHA-256 of the tool the guest checked.</summary>
    public string? ToolSha256 { get; private set; }

    /// <summary>The guest's error, if it gave up.</summary>
    public string? Error { get; private set; }

    /// <summary>Parses the command output (other lines are ignored).</summary>
    public static GuestReport Parse(string output)
    {
        var report = new GuestReport();
        foreach (string raw in output.ReplaceLineEndings("\n").Split('\n'))
        {
            string line = raw.Trim();
            Match m;
            if ((m = PartLine().Match(line)).Success)
            {
                report.Parts.Add(new GuestPart(int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture), m.Groups[2].Value, long.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture)));
            }
            else if ((m = ResultLine().Match(line)).Success)
            {
                report.TotalBytes = long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
                report.Sha256 = m.Groups[2].Value;
                report.PartCount = int.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture);
            }
            else if ((m = MemTotalLine().Match(line)).Success)
            {
                report.MemTotal = long.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            }
            else if ((m = ToolLine().Match(line)).Success)
            {
                report.ToolSha256 = m.Groups[1].Value;
            }
            else if (line.StartsWith("CLOUDMEM_RETRY ", StringComparison.Ordinal))
            {
                report.Retries.Add(line["CLOUDMEM_RETRY ".Length..]);
            }
            else if (line.StartsWith("CLOUDMEM_ERROR ", StringComparison.Ordinal))
            {
                report.Error = line["CLOUDMEM_ERROR ".Length..];
            }
        }
        return report;
    }

    /// <summary>Checks the report is whole and consistent: parts 1..N, full-size but the last, sizes adding up.</summary>
    /// <exception cref="CaptureException">what is wrong.</exception>
    public void Validate(long partBytes, long boundBytes)
    {
        if (TotalBytes is null || Sha256 is null || PartCount is null)
        {
            throw new CaptureException(Error is null ? "the guest output has no CLOUDMEM_RESULT line (output truncated or script interrupted)" : $"the guest failed: {Error}");
        }
        if (PartCount != Parts.Count || Parts.Count == 0)
        {
            throw new CaptureException($"the guest reported {PartCount} parts but listed {Parts.Count}");
        }
        for (int i = 0; i < Parts.Count; i++)
        {
            GuestPart part = Parts[i];
            if (part.Number != i + 1)
            {
                throw new CaptureException($"guest part {i + 1} is reported as number {part.Number}");
            }
            bool last = i == Parts.Count - 1;
            if (part.Bytes <= 0 || part.Bytes > partBytes || (!last && part.Bytes != partBytes))
            {
                throw new CaptureException($"guest part {part.Number} has {part.Bytes} bytes (parts are {partBytes} bytes, the last one at most)");
            }
        }
        long sum = Parts.Sum(p => p.Bytes);
        if (sum != TotalBytes)
        {
            throw new CaptureException($"guest parts add up to {sum} bytes, the result says {TotalBytes}");
        }
        if (TotalBytes > boundBytes)
        {
            throw new CaptureException($"the guest sent {TotalBytes} bytes, more than the bound {boundBytes}");
        }
    }

    [GeneratedRegex(@"^CLOUDMEM_PART (\d{1,5}) ([A-Za-z0-9-]{1,128}) (\d{1,13})$", RegexOptions.CultureInvariant)]
    private static partial Regex PartLine();

    [GeneratedRegex(@"^CLOUDMEM_RESULT (\d{1,16}) ([0-9a-f]{64}) (\d{1,5})$", RegexOptions.CultureInvariant)]
    private static partial Regex ResultLine();

    [GeneratedRegex(@"^CLOUDMEM_MEMTOTAL (\d{1,16})$", RegexOptions.CultureInvariant)]
    private static partial Regex MemTotalLine();

    [GeneratedRegex(@"^CLOUDMEM_TOOL_SHA256 ([0-9a-f]{64})$", RegexOptions.CultureInvariant)]
    private static partial Regex ToolLine();
}
