namespace CloudMem.Connectors.Core;

/// <summary>
/// POSIX sh building blocks shared by the Linux guest scripts of every provider (AWS SSM: bash; Azure managed Run
/// Command: sh). They keep the capture off the suspect's disk: all scratch (the downloaded tool, one part being
/// uploaded, the running hash) lives in a RAM-backed directory (tmpfs/ramfs: /dev/shm or /run, checked with
/// <c>stat -f</c>, and it must allow execution), and the image itself only ever flows through a pipe. No directory on a
/// disk-backed file system is written; the guest refuses to run when it finds no RAM-backed directory.
/// curl options are feature-detected: <c>--retry-all-errors</c> (curl 7.71+) only when the guest's curl lists it, and
/// our own retry loop around every request in any case (so Ubuntu 20.04's curl 7.68 retries a reset connection too).
/// </summary>
/// <remarks>
/// The fragments expect the caller to define <c>attempts</c> (tries per request) and, for <see cref="StreamUpload"/>,
/// <c>part_bytes</c> (a multiple of 1 MiB) and the functions <c>part_put N FILE</c> (uploads one part; prints the
/// service's identifier of it, e.g. the ETag, and returns non-zero on failure, writing the reason, e.g. <c>curl=56</c>,
/// to <c>$ram/why</c>), <c>part_allowed N</c> and
/// <c>part_done N ID BYTES</c>.
/// </remarks>
public static class GuestShell
{
    /// <summary>
    /// <c>fail</c>, the RAM directory (<c>$ram</c>, removed on exit), <c>$curl_retry</c> and <c>fetch URL FILE</c>
    /// (a GET with retries into a file in the RAM directory).
    /// </summary>
    public const string Prelude = """
fail() { echo "CLOUDMEM_ERROR $*"; echo "cloudmem: $*" >&2; exit 3; }
for c in curl sha256sum dd stat mkfifo cut; do
    command -v "$c" >/dev/null 2>&1 || fail "the guest lacks the command '$c'"
done
# A RAM-backed directory for all scratch: nothing of the capture may land on the suspect's disk.
ram=''
for d in ${CLOUDMEM_RAMDIR:-} /dev/shm /run; do
    [ -d "$d" ] && [ -w "$d" ] || continue
    case "$(stat -f -c %T "$d" 2>/dev/null)" in tmpfs|ramfs) ;; *) continue ;; esac
    cand="$d/cloudmem.$$"
    mkdir -m 700 "$cand" 2>/dev/null || continue
    printf '#!/bin/sh\nexit 0\n' > "$cand/probe" && chmod 700 "$cand/probe"
    if "$cand/probe" 2>/dev/null; then rm -f "$cand/probe"; ram="$cand"; break; fi
    rm -rf "$cand"
done
[ -n "$ram" ] || fail "no RAM-backed directory (tmpfs/ramfs, writable, executable) found: refusing to write the capture to disk"
trap 'rm -rf "$ram"' EXIT
echo "CLOUDMEM_SCRATCH $ram $(stat -f -c %T "$ram")"
# curl 7.71+ retries every failed transfer with --retry-all-errors; older curl only timeouts and 5xx: our loop covers both.
curl_retry='--retry 3 --retry-delay 1'
if { curl --help all 2>/dev/null; curl --help 2>/dev/null; } | grep -q -- '--retry-all-errors'; then
    curl_retry="$curl_retry --retry-all-errors"
fi
echo "CLOUDMEM_CURL $(curl --version 2>/dev/null | head -n 1 | cut -d' ' -f2) retry:$(echo "$curl_retry" | grep -q all-errors && echo all-errors || echo loop)"
fetch() {
    n=0
    while :; do
        n=$((n + 1))
        # shellcheck disable=SC2086
        if curl -fsS $curl_retry --connect-timeout 10 -o "$2" "$1"; then return 0; fi
        [ "$n" -lt "$attempts" ] || return 1
        sleep "$n"
    done
}
""";

    /// <summary>
    /// <c>stream_upload</c>: reads the image from standard input one part at a time into the RAM directory (the only
    /// copy of any byte outside the pipe), tees it into a FIFO hashed by sha256sum, uploads it with <c>part_put</c>
    /// under the retry loop, and prints <c>CLOUDMEM_RESULT bytes sha256 parts</c>.
    /// </summary>
    public const string StreamUpload = """
stream_upload() {
    part=0; total=0
    mkfifo "$ram/hash"
    sha256sum < "$ram/hash" > "$ram/sum" &
    hashpid=$!
    exec 4>"$ram/hash"
    while :; do
        dd bs=1048576 count=$((part_bytes / 1048576)) iflag=fullblock status=none of="$ram/part"
        size=$(stat -c %s "$ram/part")
        [ "$size" -gt 0 ] || break
        part=$((part + 1))
        part_allowed "$part" || fail "the image is larger than the upload bound"
        cat "$ram/part" >&4
        attempt=0
        while :; do
            attempt=$((attempt + 1))
            rm -f "$ram/why"
            if id=$(part_put "$part" "$ram/part") && [ -n "$id" ]; then break; fi
            echo "CLOUDMEM_RETRY $part $attempt $(cat "$ram/why" 2>/dev/null || echo no-id)"
            [ "$attempt" -lt "$attempts" ] || fail "part $part failed $attempt times"
            sleep "$attempt"
        done
        total=$((total + size))
        part_done "$part" "$id" "$size"
        [ "$size" -eq "$part_bytes" ] || break
    done
    rm -f "$ram/part"
    exec 4>&-
    wait "$hashpid"
    echo "CLOUDMEM_RESULT $total $(cut -d' ' -f1 < "$ram/sum") $part"
}
""";

    /// <summary>
    /// PowerShell (Windows): starts the verified WinPmem (<c>$tool</c>) writing the raw image to its standard output
    /// ('-', WinPmem's stdout mode), so no image file is written on any drive (only the small tool binary is a file);
    /// sets <c>$run</c>, <c>$errors</c> (its stderr, read asynchronously), <c>$sha</c> (SHA-256 of the stream) and
    /// <c>Read-Part BUFFER</c>, which fills one in-memory part from the stream and returns its length (0 at the end),
    /// refusing a stream that starts or ends with WinPmem's own status text (a build that prints into stdout in '-'
    /// mode would otherwise shift the whole raw image).
    /// </summary>
    public const string PowerShellStartTool = """
$psi = New-Object System.Diagnostics.ProcessStartInfo -ArgumentList @($tool, '-')
$psi.UseShellExecute = $false
$psi.RedirectStandardOutput = $true
$psi.RedirectStandardError = $true
$run = [System.Diagnostics.Process]::Start($psi)
$errors = $run.StandardError.ReadToEndAsync()
$stream = $run.StandardOutput.BaseStream
$sha = [Security.Cryptography.SHA256]::Create()
# WinPmem's mini imager (Velocidex/WinPmem src/executable/winpmem.cpp, write_raw_image) printf's "The system time is:"
# status lines to stdout even in '-' mode: a build that does would shift every offset of the raw image. Refused, never
# uploaded as evidence: the pinned build must write only the image to stdout.
$script:firstPart = $true
$marker = [Text.Encoding]::ASCII.GetBytes('The system time is: ')
function Test-Marker([byte[]]$B, [int]$At, [int]$Limit) { if ($At + $marker.Length -gt $Limit) { return $false }; for ($i = 0; $i -lt $marker.Length; $i++) { if ($B[$At + $i] -ne $marker[$i]) { return $false } }; return $true }
function Read-Part([byte[]]$Into) {
    $n = 0; while ($n -lt $Into.Length) { $r = $stream.Read($Into, $n, $Into.Length - $n); if ($r -le 0) { break }; $n += $r }
    $polluted = $script:firstPart -and $n -gt 0 -and (Test-Marker $Into 0 $n)
    $script:firstPart = $false
    if ($n -lt $Into.Length) { for ($at = [Math]::Max(0, $n - 64); $at -lt $n -and -not $polluted; $at++) { $polluted = Test-Marker $Into $at $n } }
    if ($polluted) { try { $run.Kill() } catch { }; Fail "WinPmem wrote status text into its standard output ('-' mode): this build cannot stream an image; pin one whose '-' mode writes only the image" }
    return $n
}
""";

    /// <summary>
    /// PowerShell (Windows): <c>Fail</c>, a work directory for the tool binary only (<c>$work</c>, removed by the
    /// caller's finally) and an HttpClient (<c>$client</c>, TLS 1.2, 30-minute timeout per request).
    /// </summary>
    public const string PowerShellPrelude = """
function Fail([string]$Message) { Write-Output "CLOUDMEM_ERROR $Message"; exit 3 }
# A tool's stderr in an error line: one line (the report keeps only the first), its last 300 characters.
function Format-OneLine([string]$Text) { $t = ($Text -replace '\s+', ' ').Trim(); if ($t.Length -gt 300) { $t = '...' + $t.Substring($t.Length - 300) }; return $t }
$work = Join-Path $env:TEMP ('cloudmem-' + [guid]::NewGuid().ToString('N'))
New-Item -ItemType Directory -Path $work | Out-Null
[Net.ServicePointManager]::SecurityProtocol = [Net.SecurityProtocolType]::Tls12
Add-Type -AssemblyName System.Net.Http
$client = New-Object System.Net.Http.HttpClient
$client.Timeout = [TimeSpan]::FromMinutes(30)
""";
}
