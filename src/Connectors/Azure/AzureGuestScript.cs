using System.Globalization;
using System.Text.RegularExpressions;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Azure;

/// <summary>The memory tool the guest runs.</summary>
internal enum AzureGuestTool
{
    /// <summary>AVML (Linux): captures /proc/kcore or /dev/crash, writes compressed AVML to a pipe that our script uploads block by block.</summary>
    Avml,
    /// <summary>WinPmem (Windows): writes a raw image to its standard output; our PowerShell uploads it block by block.</summary>
    WinPmem,
}

/// <summary>What the guest reports back on its standard output (lines KEY=VALUE).</summary>
/// <param name="Sha256">SHA-256 of the file the guest uploaded, as computed by the guest.</param>
/// <param name="SizeBytes">Its size.</param>
/// <param name="Error">CLOUDMEM_ERROR=... if the script reported one.</param>
internal sealed record GuestReport(string? Sha256, long? SizeBytes, string? Error);

/// <summary>
/// Builds the managed Run Command (v2) script. The two SAS URLs (read-only for the staged tool, write for the
/// evidence blob) are the only secrets and never appear in the script: they are Run Command protectedParameters
/// (<see cref="ToolUrlParameter"/>, <see cref="UploadUrlParameter"/>), which Azure passes to the script (environment
/// variables on Linux, script parameters on Windows) and never returns in the instance view or a GET. The script
/// checks the tool's SHA-256 before running it, streams the tool's output to the blob with Put Block (fixed-length
/// block ids) and one Put Block List (If-None-Match: *, so an existing blob is never replaced), hashing as it
/// goes, and prints <c>CLOUDMEM_RESULT bytes sha256 blocks</c>. Nothing is written to the guest's disks: on Linux
/// the tool and the block in flight are in a RAM-backed directory (<see cref="GuestShell"/>), on Windows WinPmem writes
/// to its standard output ('-') and each block is a byte array in memory (only the tool binary is a file).
/// </summary>
internal static partial class AzureGuestScript
{
    /// <summary>Block size of both uploaders (16 MiB: 50,000 blocks cover 781 GiB).</summary>
    public const int BlockBytes = 16 << 20;

    /// <summary>Protected parameter holding the read-only SAS URL of the staged tool.</summary>
    public const string ToolUrlParameter = "CLOUDMEM_TOOL_URL";

    /// <summary>Protected parameter holding the write SAS URL of the evidence blob.</summary>
    public const string UploadUrlParameter = "CLOUDMEM_UPLOAD_URL";

    /// <summary>Attempts per request before the script gives up.</summary>
    public const int Attempts = 6;

    /// <summary>The Run Command id of the v1 API for the tool's OS (kept for messages: v2 runs our script as its source).</summary>
    public static string CommandId(AzureGuestTool tool) => tool == AzureGuestTool.Avml ? "RunShellScript" : "RunPowerShellScript";

    /// <summary>The script (Run Command v2 source.script); it holds no URL.</summary>
    public static string Build(AzureGuestTool tool, string toolSha256, string label)
    {
        if (!Sha256Hex().IsMatch(toolSha256))
        {
            throw new ArgumentException("the tool's SHA-256 must be 64 hex digits", nameof(toolSha256));
        }
        string sha = toolSha256.ToLowerInvariant();
        string safeLabel = SafeLabel().Replace(label, "_");
        string template = tool == AzureGuestTool.Avml ? LinuxTemplate : WindowsTemplate;
        string script = template
            .Replace("@LABEL@", safeLabel, StringComparison.Ordinal)
            .Replace("@TOOLSHA@", sha, StringComparison.Ordinal)
            .Replace("@BLOCK@", BlockBytes.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("@ATTEMPTS@", Attempts.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("@TOOLURL@", ToolUrlParameter, StringComparison.Ordinal)
            .Replace("@UPLOADURL@", UploadUrlParameter, StringComparison.Ordinal)
            .Replace("@PRELUDE@", GuestShell.Prelude, StringComparison.Ordinal)
            .Replace("@UPLOAD@", GuestShell.StreamUpload, StringComparison.Ordinal)
            .Replace("@STARTTOOL@", GuestShell.PowerShellStartTool, StringComparison.Ordinal)
            .Replace("@PSPRELUDE@", GuestShell.PowerShellPrelude, StringComparison.Ordinal);
        return tool == AzureGuestTool.Avml ? script.ReplaceLineEndings("\n") : script.ReplaceLineEndings("\r\n");
    }

    /// <summary>Checks a SAS URL before it is passed as a protected parameter (the script quotes it, so no quote or control character).</summary>
    public static string ParameterValue(Uri url)
    {
        string text = url.AbsoluteUri;
        if (text.Any(c => c == '\'' || c == '"' || char.IsControl(c) || c == '`'))
        {
            throw new ArgumentException("a SAS URL with a quote or control character cannot be passed to the guest script");
        }
        return text;
    }

    private const string LinuxTemplate = """
#!/bin/sh
# cloudmem memory capture (@LABEL@): AVML streamed to one blob by Put Block / Put Block List.
# The SAS URLs come from Run Command protected parameters (environment): this text holds none.
set -eu
umask 077
tool_sha256='@TOOLSHA@'
part_bytes=@BLOCK@
attempts=@ATTEMPTS@
[ -n "${@TOOLURL@:-}" ] && [ -n "${@UPLOADURL@:-}" ] || { echo 'CLOUDMEM_ERROR the protected parameters @TOOLURL@/@UPLOADURL@ are missing'; exit 3; }
@PRELUDE@
fetch "$@TOOLURL@" "$ram/tool" || fail "could not download the staged tool"
actual=$(sha256sum "$ram/tool" | cut -d' ' -f1)
[ "$actual" = "$tool_sha256" ] || fail "staged tool SHA-256 is $actual, expected $tool_sha256: not run"
echo "CLOUDMEM_TOOL_SHA256 $actual"
chmod 700 "$ram/tool"
: > "$ram/blocks"
part_allowed() { [ "$1" -le 50000 ]; }
part_done() { printf '<Latest>%s</Latest>' "$2" >> "$ram/blocks"; echo "CLOUDMEM_PART $1 $2 $3"; }
# One Put Block; prints the block id (base64 of a fixed-length name, as Azure requires ids of one length per blob).
part_put() {
    bid=$(printf 'cloudmem-%08d' "$1" | base64 | tr -d '\n')
    enc=$(printf %s "$bid" | sed 's/+/%2B/g; s/\//%2F/g; s/=/%3D/g')
    curl -sS -f -X PUT -H 'x-ms-version: 2021-08-06' -H 'Content-Type: application/octet-stream' --upload-file "$2" \
        -o /dev/null --connect-timeout 10 --max-time 1800 "$@UPLOADURL@&comp=block&blockid=$enc" 2>"$ram/curl.err" \
        || { rc=$?; echo "curl=$rc" > "$ram/why"; return 1; }
    echo "$bid"
}
@UPLOAD@
exec 3>&1
{ "$ram/tool" --compress /dev/stdout 2>"$ram/tool.log" || { rc=$?; : > "$ram/toolfailed"; echo "CLOUDMEM_ERROR avml exited with status $rc ($(tail -c 300 "$ram/tool.log" | tr '\n' ' '))" >&3; exit 3; }; } \
    | { stream_upload; : > "$ram/streamed"; }
# A tool that failed part-way leaves uncommitted blocks only (Azure discards them after a week): nothing is committed.
[ -f "$ram/streamed" ] && [ ! -f "$ram/toolfailed" ] || exit 3
n=0
while :; do
    n=$((n + 1))
    if { printf '<?xml version="1.0" encoding="utf-8"?><BlockList>'; cat "$ram/blocks"; printf '</BlockList>'; } \
        | curl -sS -f -X PUT -H 'x-ms-version: 2021-08-06' -H 'Content-Type: application/xml' -H 'If-None-Match: *' \
            --data-binary @- -o /dev/null --connect-timeout 10 "$@UPLOADURL@&comp=blocklist"; then break; fi
    [ "$n" -lt "$attempts" ] || fail "Put Block List failed $n times"
    sleep "$n"
done
echo "CLOUDMEM_COMMITTED"
""";

    private const string WindowsTemplate = """
param([string]$@TOOLURL@, [string]$@UPLOADURL@)
# cloudmem memory capture (@LABEL@): WinPmem to standard output, Put Block per 16 MiB read into memory, Put Block List.
# The SAS URLs come from Run Command protected parameters: this text holds none. No image file is written.
$ErrorActionPreference = 'Stop'
$ProgressPreference = 'SilentlyContinue'
@PSPRELUDE@
try {
  if (-not $@TOOLURL@ -or -not $@UPLOADURL@) { Fail 'the protected parameters @TOOLURL@/@UPLOADURL@ are missing' }
  $client.DefaultRequestHeaders.Add('x-ms-version', '2021-08-06')
  $tool = Join-Path $work 'winpmem.exe'
  try { [IO.File]::WriteAllBytes($tool, $client.GetByteArrayAsync($@TOOLURL@).GetAwaiter().GetResult()) } catch { Fail 'could not download the staged tool' }
  $actual = (Get-FileHash -Algorithm SHA256 -Path $tool).Hash.ToLowerInvariant()
  if ($actual -ne '@TOOLSHA@') { Fail "staged tool SHA-256 is $actual, expected @TOOLSHA@: not run" }
  Write-Output "CLOUDMEM_TOOL_SHA256 $actual"
@STARTTOOL@
  $buffer = New-Object byte[] @BLOCK@
  $ids = New-Object System.Collections.Generic.List[string]
  $total = [long]0
  try {
    while ($true) {
      $n = Read-Part $buffer
      if ($n -eq 0) { break }
      [void]$sha.TransformBlock($buffer, 0, $n, $null, 0)
      $id = [Convert]::ToBase64String([Text.Encoding]::ASCII.GetBytes('cloudmem-' + ($ids.Count + 1).ToString('d8')))
      for ($try = 1; ; $try++) {
        $why = ''
        try {
          $content = New-Object System.Net.Http.ByteArrayContent -ArgumentList @($buffer, 0, $n)
          $response = $client.PutAsync($@UPLOADURL@ + '&comp=block&blockid=' + [Uri]::EscapeDataString($id), $content).GetAwaiter().GetResult()
          if ($response.IsSuccessStatusCode) { break }
          $why = [int]$response.StatusCode
        } catch { $why = $_.Exception.GetType().Name }
        Write-Output "CLOUDMEM_RETRY $($ids.Count + 1) $try $why"
        if ($try -ge @ATTEMPTS@) { $run.Kill(); Fail "Put Block $($ids.Count + 1) failed $try times ($why)" }
        Start-Sleep -Seconds $try
      }
      $ids.Add($id)
      $total += $n
      Write-Output "CLOUDMEM_PART $($ids.Count) $id $n"
      if ($n -lt $buffer.Length) { break }
    }
  } finally { $stream.Dispose() }
  $run.WaitForExit()
  if ($run.ExitCode -ne 0) { Fail "winpmem exited with status $($run.ExitCode): $(Format-OneLine $errors.Result)" }
  [void]$sha.TransformFinalBlock($buffer, 0, 0)
  $list = '<?xml version="1.0" encoding="utf-8"?><BlockList>' + (($ids | ForEach-Object { '<Latest>' + $_ + '</Latest>' }) -join '') + '</BlockList>'
  $commit = New-Object System.Net.Http.StringContent -ArgumentList @($list, [Text.Encoding]::UTF8, 'application/xml')
  $request = New-Object System.Net.Http.HttpRequestMessage -ArgumentList @([System.Net.Http.HttpMethod]::Put, ($@UPLOADURL@ + '&comp=blocklist'))
  $request.Content = $commit
  $request.Headers.TryAddWithoutValidation('If-None-Match', '*') | Out-Null
  $response = $client.SendAsync($request).GetAwaiter().GetResult()
  if (-not $response.IsSuccessStatusCode) { Fail "Put Block List failed ($([int]$response.StatusCode))" }
  Write-Output "CLOUDMEM_COMMITTED"
  Write-Output ('CLOUDMEM_RESULT ' + $total + ' ' + ([BitConverter]::ToString($sha.Hash) -replace '-', '').ToLowerInvariant() + ' ' + $ids.Count)
} finally { Remove-Item -Recurse -Force -Path $work -ErrorAction SilentlyContinue }
""";

    /// <summary>Reads the report lines the script printed (<c>CLOUDMEM_RESULT bytes sha256 blocks</c>, <c>CLOUDMEM_ERROR why</c>).</summary>
    public static GuestReport ParseOutput(string output)
    {
        string? sha = null, error = null;
        long? size = null;
        foreach (string raw in output.Split('\n'))
        {
            string line = raw.Trim();
            string[] fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length == 4 && fields[0] == "CLOUDMEM_RESULT" && Sha256Hex().IsMatch(fields[2])
                && long.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out long value))
            {
                sha = fields[2].ToLowerInvariant();
                size = value;
            }
            else if (line.StartsWith("CLOUDMEM_ERROR ", StringComparison.Ordinal))
            {
                error ??= line["CLOUDMEM_ERROR ".Length..];
            }
        }
        return new GuestReport(sha, size, error);
    }

    [GeneratedRegex("^[0-9a-fA-F]{64}$")]
    private static partial Regex Sha256Hex();

    [GeneratedRegex("[^A-Za-z0-9._:/-]")]
    private static partial Regex SafeLabel();
}
