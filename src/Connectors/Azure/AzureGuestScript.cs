using System.Globalization;
using System.Text.RegularExpressions;

namespace CloudMem.Connectors.Azure;

/// <summary>The memory tool the guest runs.</summary>
internal enum AzureGuestTool
{
    /// <summary>AVML (Linux): captures /proc/kcore or /dev/crash, writes compressed AVML, uploads itself with --sas-url.</summary>
    Avml,
    /// <summary>WinPmem (Windows): writes a raw image; our PowerShell uploads it block by block.</summary>
    WinPmem,
}

/// <summary>What the guest reports back on its standard output (lines KEY=VALUE).</summary>
/// <param name="Sha256">SHA-256 of the file the guest uploaded, as computed by the guest.</param>
/// <param name="SizeBytes">Its size.</param>
/// <param name="Error">CLOUDMEM_ERROR=... if the script reported one.</param>
internal sealed record GuestReport(string? Sha256, long? SizeBytes, string? Error);

/// <summary>
/// Builds the Run Command script. The two SAS URLs (read-only for the staged tool, create-only for the evidence
/// blob) are the only secrets and appear only here: they are not Run Command parameters (those are listed in the
/// instance view), not in the manifest, not in logs. The script checks the tool's SHA-256 before running it,
/// hashes what it uploaded and prints <c>CLOUDMEM_SHA256=</c> / <c>CLOUDMEM_SIZE=</c> for the verification.
/// </summary>
internal static partial class AzureGuestScript
{
    /// <summary>Upload block size of the Windows uploader (16 MiB: 50,000 blocks cover 781 GiB).</summary>
    public const int WindowsBlockBytes = 16 << 20;

    /// <summary>The Run Command id for the tool's OS.</summary>
    public static string CommandId(AzureGuestTool tool) => tool == AzureGuestTool.Avml ? "RunShellScript" : "RunPowerShellScript";

    /// <summary>The script as lines (Run Command's script array).</summary>
    public static IReadOnlyList<string> Build(AzureGuestTool tool, Uri toolSas, string toolSha256, Uri uploadSas, string label)
    {
        string toolUrl = Quote(toolSas);
        string uploadUrl = Quote(uploadSas);
        if (!Sha256Hex().IsMatch(toolSha256))
        {
            throw new ArgumentException("the tool's SHA-256 must be 64 hex digits", nameof(toolSha256));
        }
        string sha = toolSha256.ToLowerInvariant();
        string safeLabel = SafeLabel().Replace(label, "_");
        return tool == AzureGuestTool.Avml ? Linux(toolUrl, sha, uploadUrl, safeLabel) : Windows(toolUrl, sha, uploadUrl, safeLabel);
    }

    private static IReadOnlyList<string> Linux(string toolUrl, string sha, string uploadUrl, string label) =>
    [
        "#!/bin/sh",
        $"# cloudmem memory capture ({label}): AVML to a create-only, single-blob SAS",
        "set -eu",
        "umask 077",
        "work=$(mktemp -d /var/tmp/cloudmem.XXXXXX)",
        "trap 'rm -rf \"$work\"' EXIT",
        "tool=\"$work/avml\"",
        "out=\"$work/memory.avml\"",
        "fetch() { if command -v curl >/dev/null 2>&1; then curl -fsS --retry 5 --retry-all-errors -o \"$2\" \"$1\"; else wget -q -O \"$2\" \"$1\"; fi; }",
        $"if ! fetch '{toolUrl}' \"$tool\"; then echo 'CLOUDMEM_ERROR=could not download the staged tool'; exit 3; fi",
        $"if ! echo '{sha}  '\"$tool\" | sha256sum -c - >/dev/null 2>&1; then echo 'CLOUDMEM_ERROR=staged tool SHA-256 mismatch'; exit 3; fi",
        "chmod 700 \"$tool\"",
        $"if ! \"$tool\" --compress --sas-url '{uploadUrl}' \"$out\"; then echo 'CLOUDMEM_ERROR=avml failed'; exit 4; fi",
        "echo \"CLOUDMEM_SHA256=$(sha256sum \"$out\" | cut -d' ' -f1)\"",
        "echo \"CLOUDMEM_SIZE=$(stat -c %s \"$out\")\"",
    ];

    private static IReadOnlyList<string> Windows(string toolUrl, string sha, string uploadUrl, string label) =>
    [
        $"# cloudmem memory capture ({label}): WinPmem, then Put Block / Put Block List to a create-only, single-blob SAS",
        "$ErrorActionPreference = 'Stop'",
        "$ProgressPreference = 'SilentlyContinue'",
        "$work = Join-Path $env:SystemRoot ('Temp\\cloudmem-' + [guid]::NewGuid().ToString('N'))",
        "New-Item -ItemType Directory -Path $work | Out-Null",
        "try {",
        "  $tool = Join-Path $work 'winpmem.exe'",
        "  $out = Join-Path $work 'memory.raw'",
        $"  try {{ Invoke-WebRequest -UseBasicParsing -Uri '{toolUrl}' -OutFile $tool }} catch {{ Write-Output 'CLOUDMEM_ERROR=could not download the staged tool'; exit 3 }}",
        $"  if ((Get-FileHash -Algorithm SHA256 -Path $tool).Hash.ToLowerInvariant() -ne '{sha}') {{ Write-Output 'CLOUDMEM_ERROR=staged tool SHA-256 mismatch'; exit 3 }}",
        "  & $tool $out | Out-Null",
        "  if ($LASTEXITCODE -ne 0) { Write-Output \"CLOUDMEM_ERROR=winpmem exit code $LASTEXITCODE\"; exit 4 }",
        $"  $sas = '{uploadUrl}'",
        "  $headers = @{ 'x-ms-version' = '2021-08-06' }",
        "  $ids = New-Object System.Collections.Generic.List[string]",
        "  $stream = [System.IO.File]::OpenRead($out)",
        "  try {",
        $"    $buffer = New-Object byte[] {WindowsBlockBytes.ToString(CultureInfo.InvariantCulture)}",
        "    while (($read = $stream.Read($buffer, 0, $buffer.Length)) -gt 0) {",
        "      $id = [Convert]::ToBase64String([Text.Encoding]::ASCII.GetBytes($ids.Count.ToString('d8')))",
        "      $body = New-Object byte[] $read",
        "      [Array]::Copy($buffer, $body, $read)",
        "      for ($try = 1; ; $try++) {",
        "        try { Invoke-WebRequest -UseBasicParsing -Method Put -Uri ($sas + '&comp=block&blockid=' + [Uri]::EscapeDataString($id)) -Headers $headers -Body $body | Out-Null; break }",
        "        catch { if ($try -ge 6) { Write-Output \"CLOUDMEM_ERROR=Put Block $($ids.Count) failed\"; exit 5 }; Start-Sleep -Seconds (2 * $try) }",
        "      }",
        "      $ids.Add($id)",
        "    }",
        "  } finally { $stream.Dispose() }",
        "  $list = '<?xml version=\"1.0\" encoding=\"utf-8\"?><BlockList>' + (($ids | ForEach-Object { '<Latest>' + $_ + '</Latest>' }) -join '') + '</BlockList>'",
        "  try { Invoke-WebRequest -UseBasicParsing -Method Put -Uri ($sas + '&comp=blocklist') -Headers $headers -ContentType 'application/xml' -Body $list | Out-Null }",
        "  catch { Write-Output 'CLOUDMEM_ERROR=Put Block List failed'; exit 5 }",
        "  Write-Output ('CLOUDMEM_SHA256=' + (Get-FileHash -Algorithm SHA256 -Path $out).Hash.ToLowerInvariant())",
        "  Write-Output ('CLOUDMEM_SIZE=' + (Get-Item $out).Length)",
        "} finally { Remove-Item -Recurse -Force -Path $work -ErrorAction SilentlyContinue }",
    ];

    /// <summary>Reads the KEY=VALUE lines the script printed (in the Run Command output).</summary>
    public static GuestReport ParseOutput(string output)
    {
        string? sha = null, error = null;
        long? size = null;
        foreach (string raw in output.Split('\n'))
        {
            string line = raw.Trim();
            if (line.StartsWith("CLOUDMEM_SHA256=", StringComparison.Ordinal) && Sha256Hex().IsMatch(line[16..]))
            {
                sha = line[16..].ToLowerInvariant();
            }
            else if (line.StartsWith("CLOUDMEM_SIZE=", StringComparison.Ordinal)
                && long.TryParse(line[14..], NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            {
                size = value;
            }
            else if (line.StartsWith("CLOUDMEM_ERROR=", StringComparison.Ordinal))
            {
                error = line[15..];
            }
        }
        return new GuestReport(sha, size, error);
    }

    /// <summary>A URL inside single quotes in both shells: it must not hold a quote or a control character.</summary>
    private static string Quote(Uri url)
    {
        string text = url.AbsoluteUri;
        if (text.Any(c => c == '\'' || char.IsControl(c) || c == '`'))
        {
            throw new ArgumentException("a SAS URL with a quote or control character cannot be placed in the guest script");
        }
        return text;
    }

    [GeneratedRegex("^[0-9a-fA-F]{64}$")]
    private static partial Regex Sha256Hex();

    [GeneratedRegex("[^A-Za-z0-9._:/-]")]
    private static partial Regex SafeLabel();
}
