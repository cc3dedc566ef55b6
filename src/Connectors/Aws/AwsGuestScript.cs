using System.Globalization;
using System.Text.RegularExpressions;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Aws;

/// <summary>What the generated guest script needs: no credential and no URL, only a reference to where the ticket is.</summary>
/// <param name="TicketReference">An SSM parameter reference (<c>{{ssm:/cloudmem/ticket/...}}</c>) that Systems Manager
/// resolves when it delivers the command; its value is a presigned GET URL of the ticket object, whose first line is the
/// tool's presigned GET URL and the next lines the presigned UploadPart URLs, in part order.</param>
/// <param name="ToolSha256">SHA-256 the downloaded tool must have before it is run.</param>
/// <param name="PartBytes">Part size (a multiple of 1 MiB).</param>
/// <param name="BoundBytes">Largest image the presigned parts can hold.</param>
public sealed record GuestScriptInput(string TicketReference, string ToolSha256, long PartBytes, long BoundBytes);

/// <summary>
/// The scripts SSM Run Command runs in the guest (bash for AWS-RunShellScript, PowerShell for
/// AWS-RunPowerShellScript). Both download the tool through a presigned GET, check its SHA-256 before running it,
/// and upload the image in parts through presigned UploadPart URLs with per-part retries, then report
/// <c>CLOUDMEM_PART n etag bytes</c> lines and <c>CLOUDMEM_RESULT bytes sha256 parts</c>. The guest holds no AWS
/// credential; the URLs reach it only through the SSM parameter the script references.
/// </summary>
public static partial class AwsGuestScript
{
    /// <summary>Attempts per part before the script gives up.</summary>
    public const int PartAttempts = 6;

    /// <summary>The bash script (Linux, AVML: the image streamed through a pipe, one part buffered in a RAM-backed directory).</summary>
    public static string Bash(GuestScriptInput input)
    {
        Validate(input);
        string script = BashTemplate
            .Replace("@TICKET@", input.TicketReference, StringComparison.Ordinal)
            .Replace("@TOOLSHA@", input.ToolSha256, StringComparison.Ordinal)
            .Replace("@PARTBYTES@", input.PartBytes.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("@BOUND@", input.BoundBytes.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("@ATTEMPTS@", PartAttempts.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("@PRELUDE@", GuestShell.Prelude, StringComparison.Ordinal)
            .Replace("@UPLOAD@", GuestShell.StreamUpload, StringComparison.Ordinal);
        return script.ReplaceLineEndings("\n");
    }

    /// <summary>The PowerShell script (Windows, WinPmem: the raw image read from the tool's standard output into one in-memory part at a time).</summary>
    public static string PowerShell(GuestScriptInput input)
    {
        Validate(input);
        string script = PowerShellTemplate
            .Replace("@TICKET@", input.TicketReference, StringComparison.Ordinal)
            .Replace("@TOOLSHA@", input.ToolSha256, StringComparison.Ordinal)
            .Replace("@PARTBYTES@", input.PartBytes.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("@BOUND@", input.BoundBytes.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("@ATTEMPTS@", PartAttempts.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
            .Replace("@STARTTOOL@", GuestShell.PowerShellStartTool, StringComparison.Ordinal)
            .Replace("@PSPRELUDE@", GuestShell.PowerShellPrelude, StringComparison.Ordinal);
        return script.ReplaceLineEndings("\r\n");
    }

    /// <summary>Splits a script into the lines SSM's <c>commands</c> parameter takes.</summary>
    public static List<string> ToCommands(string script) => [.. script.ReplaceLineEndings("\n").Split('\n')];

    private static void Validate(GuestScriptInput input)
    {
        // Everything substituted is checked against a strict shape: nothing can break out of its quotes.
        if (!TicketPattern().IsMatch(input.TicketReference))
        {
            throw new ArgumentException($"ticket reference '{input.TicketReference}' is not an SSM parameter reference", nameof(input));
        }
        if (!Sha256Pattern().IsMatch(input.ToolSha256))
        {
            throw new ArgumentException("tool SHA-256 must be 64 lower-case hex digits", nameof(input));
        }
        if (input.PartBytes < 5L << 20 || input.PartBytes % (1 << 20) != 0 || input.PartBytes > 5L << 30 || input.BoundBytes < input.PartBytes)
        {
            throw new ArgumentException("part size must be a multiple of 1 MiB between 5 MiB and 5 GiB, and the bound at least one part", nameof(input));
        }
    }

    [GeneratedRegex(@"^\{\{ssm:/[A-Za-z0-9_./-]{1,1000}\}\}$", RegexOptions.CultureInvariant)]
    private static partial Regex TicketPattern();

    [GeneratedRegex("^[0-9a-f]{64}$", RegexOptions.CultureInvariant)]
    private static partial Regex Sha256Pattern();

    private const string BashTemplate = """
#!/bin/bash
# cloudmem guest script (Linux): acquire memory with the staged tool and stream it to S3 in parts.
# No AWS credential is used here: every request goes to a presigned URL from the ticket that Systems Manager
# delivers through the parameter below. Output lines starting with CLOUDMEM_ are read by cloudmem.
# Nothing is written to the disk: the tool, the ticket and the part being uploaded live in a RAM-backed directory.
set -euo pipefail
umask 077
ticket_url='@TICKET@'
tool_sha256='@TOOLSHA@'
part_bytes=@PARTBYTES@
bound_bytes=@BOUND@
attempts=@ATTEMPTS@
meminfo="${CLOUDMEM_GUEST_MEMINFO:-/proc/meminfo}"
@PRELUDE@
command -v awk >/dev/null 2>&1 || fail "the guest lacks the command 'awk'"
fetch "$ticket_url" "$ram/ticket" || fail "could not download the ticket"
mapfile -t urls < <(tr -d '\r' < "$ram/ticket")
rm -f "$ram/ticket"
[ "${#urls[@]}" -ge 2 ] || fail "the ticket holds no part URL"
fetch "${urls[0]}" "$ram/tool" || fail "could not download the acquisition tool"
actual=$(sha256sum "$ram/tool" | awk '{print $1}')
[ "$actual" = "$tool_sha256" ] || fail "acquisition tool SHA-256 is $actual, expected $tool_sha256: not run"
echo "CLOUDMEM_TOOL_SHA256 $actual"
chmod 700 "$ram/tool"

memtotal=$(( $(awk '/^MemTotal:/ {print $2}' "$meminfo") * 1024 ))
echo "CLOUDMEM_MEMTOTAL $memtotal"
[ "$memtotal" -le "$bound_bytes" ] || fail "MemTotal $memtotal bytes exceeds the upload bound $bound_bytes bytes"

part_allowed() { [ "$1" -lt "${#urls[@]}" ]; }
part_done() { echo "CLOUDMEM_PART $1 $2 $3"; }
# One presigned UploadPart PUT (Content-MD5 when openssl is there); prints the part's ETag.
part_put() {
    local md5header=() rc=0
    if command -v openssl >/dev/null 2>&1; then
        md5header=(-H "Content-MD5: $(openssl dgst -md5 -binary "$2" | base64)")
    fi
    curl -sS -f -X PUT "${md5header[@]}" --upload-file "$2" -D "$ram/headers" -o /dev/null \
        --connect-timeout 10 --max-time 1800 "${urls[$1]}" 2>"$ram/curl.err" || rc=$?
    [ "$rc" -eq 0 ] || { echo "curl=$rc" > "$ram/why"; return 1; }
    tr -d '\r"' < "$ram/headers" | awk 'tolower($1) == "etag:" {print $2}' | tail -n 1
}
@UPLOAD@
# The tool writes the image to the pipe (AVML and the test stand-in take /dev/stdout as their destination); a failing
# tool or upload fails the whole pipeline.
exec 3>&1
{ "$ram/tool" /dev/stdout 2>"$ram/tool.log" || { rc=$?; echo "CLOUDMEM_ERROR acquisition tool exited with status $rc ($(tail -c 300 "$ram/tool.log" | tr '\n' ' '))" >&3; exit 3; }; } | stream_upload
""";

    private const string PowerShellTemplate = """
# cloudmem guest script (Windows): acquire memory with the staged tool, then upload it to S3 in parts.
# No AWS credential is used here: every request goes to a presigned URL from the ticket that Systems Manager
# delivers through the parameter below. Output lines starting with CLOUDMEM_ are read by cloudmem.
$ErrorActionPreference = 'Stop'
$TicketUrl = '@TICKET@'
$ToolSha256 = '@TOOLSHA@'
$PartBytes = [long]@PARTBYTES@
$BoundBytes = [long]@BOUND@
$Attempts = @ATTEMPTS@
@PSPRELUDE@
try {
    $ticket = $client.GetStringAsync($TicketUrl).GetAwaiter().GetResult()
    $urls = @($ticket -split "`n" | ForEach-Object { $_.Trim() } | Where-Object { $_ })
    if ($urls.Count -lt 2) { Fail 'the ticket holds no part URL' }
    $tool = Join-Path $work 'winpmem.exe'
    [IO.File]::WriteAllBytes($tool, $client.GetByteArrayAsync($urls[0]).GetAwaiter().GetResult())
    $actual = (Get-FileHash -Algorithm SHA256 -Path $tool).Hash.ToLowerInvariant()
    if ($actual -ne $ToolSha256) { Fail "acquisition tool SHA-256 is $actual, expected ${ToolSha256}: not run" }
    Write-Output "CLOUDMEM_TOOL_SHA256 $actual"
    $memtotal = [long](Get-CimInstance -ClassName Win32_ComputerSystem).TotalPhysicalMemory
    Write-Output "CLOUDMEM_MEMTOTAL $memtotal"
    if ($memtotal -gt $BoundBytes) { Fail "MemTotal $memtotal bytes exceeds the upload bound $BoundBytes bytes" }
    # WinPmem writes the raw image to its standard output ('-'), read here part by part into memory: no image file on
    # any drive. Only the tool itself (a few hundred KB) is a file, in the TEMP directory, removed at the end.
@STARTTOOL@
    $md5 = [Security.Cryptography.MD5]::Create()
    $buffer = New-Object byte[] ([int]$PartBytes)
    $part = 0; $total = [long]0
    try {
        while ($true) {
            $n = Read-Part $buffer
            if ($n -eq 0) { break }
            $part++
            if ($part -ge $urls.Count) { $run.Kill(); Fail "the image is larger than the upload bound ($BoundBytes bytes)" }
            [void]$sha.TransformBlock($buffer, 0, $n, $null, 0)
            $digest = $md5.ComputeHash($buffer, 0, $n)
            for ($attempt = 1; ; $attempt++) {
                $why = ''
                try {
                    $content = New-Object System.Net.Http.ByteArrayContent -ArgumentList @($buffer, 0, $n)
                    $content.Headers.ContentMD5 = $digest
                    $response = $client.PutAsync($urls[$part], $content).GetAwaiter().GetResult()
                    if ($response.IsSuccessStatusCode -and $response.Headers.ETag) { $etag = $response.Headers.ETag.Tag.Trim('"'); break }
                    $why = [int]$response.StatusCode
                } catch { $why = $_.Exception.GetType().Name }
                Write-Output "CLOUDMEM_RETRY $part $attempt $why"
                if ($attempt -ge $Attempts) { Fail "part $part failed $attempt times ($why)" }
                Start-Sleep -Seconds $attempt
            }
            $total += $n
            Write-Output "CLOUDMEM_PART $part $etag $n"
            if ($n -lt $PartBytes) { break }
        }
    } finally { $stream.Dispose() }
    $run.WaitForExit()
    if ($run.ExitCode -ne 0) { Fail "acquisition tool exited with status $($run.ExitCode): $(Format-OneLine $errors.Result)" }
    [void]$sha.TransformFinalBlock($buffer, 0, 0)
    $hex = ([BitConverter]::ToString($sha.Hash) -replace '-', '').ToLowerInvariant()
    Write-Output "CLOUDMEM_RESULT $total $hex $part"
} finally {
    Remove-Item -Recurse -Force -Path $work -ErrorAction SilentlyContinue
}
""";
}
