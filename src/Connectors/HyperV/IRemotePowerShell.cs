using System.Diagnostics;
using System.Text;
using System.Text.Json;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.HyperV;

/// <summary>
/// Runs PowerShell on a Hyper-V host and copies files from it. One real implementation
/// (<see cref="PwshRemotePowerShell"/>: PowerShell 7 remoting over WinRM); tests use a fake that serves real files.
/// </summary>
public interface IRemotePowerShell : IAsyncDisposable
{
    /// <summary>How commands reach the host (for the manifest).</summary>
    string Description { get; }

    /// <summary>
    /// Runs <paramref name="script"/> on the host with <paramref name="arguments"/> bound to <c>$a</c> (a hashtable of
    /// strings) and returns its output converted to JSON (null output: <see cref="JsonValueKind.Undefined"/>).
    /// <paramref name="step"/> names the step (logs, and the test fake's dispatch).
    /// </summary>
    /// <exception cref="CaptureException">the script failed (one line, PowerShell's message).</exception>
    Task<JsonElement> InvokeAsync(string step, string script, IReadOnlyDictionary<string, string> arguments, CancellationToken cancellationToken);

    /// <summary>Copies <paramref name="remotePath"/> on the host to <paramref name="localPath"/> (which must not exist).</summary>
    Task CopyFromHostAsync(string remotePath, string localPath, CancellationToken cancellationToken);
}

/// <summary>
/// <see cref="IRemotePowerShell"/> through PowerShell 7 (<c>pwsh</c>): each call opens a PSSession to the host
/// (<c>New-PSSession -ComputerName</c>, WinRM over HTTP or, with <c>useSsl</c>, HTTPS), runs the script with
/// <c>Invoke-Command</c> and returns <c>ConvertTo-Json</c>; files come back with <c>Copy-Item -FromSession</c>. On Windows
/// with host "localhost" the script runs in the local pwsh without remoting. Credentials, when given, travel to the
/// child pwsh in environment variables (never on its command line) and become a PSCredential there. Writing WinRM's
/// WS-Management SOAP protocol ourselves is out of scope: without pwsh this fails with a clear message.
/// </summary>
public sealed class PwshRemotePowerShell : IRemotePowerShell
{
    private const string UserVariable = "CLOUDMEM_PS_USER";
    private const string PasswordVariable = "CLOUDMEM_PS_PASSWORD";
    private const string ArgumentsVariable = "CLOUDMEM_PS_ARGS";
    private readonly string _pwsh;
    private readonly string _host;
    private readonly bool _useSsl;
    private readonly System.Net.NetworkCredential? _credential;
    private readonly TimeSpan _callTimeout;

    /// <summary>
    /// Finds pwsh (env CLOUDMEM_PWSH, else on PATH).
    /// </summary>
    /// <exception cref="CaptureException">pwsh is not installed.</exception>
    public PwshRemotePowerShell(string host, bool useSsl, System.Net.NetworkCredential? credential, TimeSpan? callTimeout = null)
    {
        _pwsh = Locate() ?? throw new CaptureException(
            "Hyper-V capture needs PowerShell 7 (pwsh) for WinRM remoting and it is not installed here (set CLOUDMEM_PWSH or install the powershell package); run cloudmem on Windows or a host with pwsh");
        _host = host;
        _useSsl = useSsl;
        _credential = credential;
        _callTimeout = callTimeout ?? TimeSpan.FromHours(2);
    }

    /// <inheritdoc />
    public string Description => IsLocal ? $"local pwsh ({_pwsh})" : $"pwsh remoting to {_host} (WinRM {(_useSsl ? "HTTPS" : "HTTP")})";

    private bool IsLocal => OperatingSystem.IsWindows() && _host is "localhost" or "." or "127.0.0.1";

    /// <summary>pwsh's path, or null.</summary>
    public static string? Locate()
    {
        if (Environment.GetEnvironmentVariable("CLOUDMEM_PWSH") is { Length: > 0 } configured)
        {
            return File.Exists(configured) ? configured : null;
        }
        string name = OperatingSystem.IsWindows() ? "pwsh.exe" : "pwsh";
        foreach (string directory in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            string candidate = Path.Combine(directory, name);
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    /// <inheritdoc />
    public async Task<JsonElement> InvokeAsync(string step, string script, IReadOnlyDictionary<string, string> arguments, CancellationToken cancellationToken)
    {
        string body = $$"""
            $ErrorActionPreference = 'Stop'
            $argsTable = @{}
            ($env:{{ArgumentsVariable}} | ConvertFrom-Json).PSObject.Properties | ForEach-Object { $argsTable[$_.Name] = [string]$_.Value }
            $block = [scriptblock]::Create(@'
            param($a)
            $ErrorActionPreference = 'Stop'
            {{script}}
            '@)
            {{(IsLocal ? "$out = & $block $argsTable" : SessionOpen() + "try { $out = Invoke-Command -Session $s -ScriptBlock $block -ArgumentList $argsTable } finally { Remove-PSSession $s }")}}
            if ($null -ne $out) { $out | Select-Object * -ExcludeProperty PSComputerName,RunspaceId,PSShowComputerName | ConvertTo-Json -Depth 6 -Compress }
            """;
        string output = await RunAsync(step, body, JsonSerializer.Serialize(arguments), cancellationToken).ConfigureAwait(false);
        if (string.IsNullOrWhiteSpace(output))
        {
            return default;
        }
        try
        {
            using JsonDocument document = JsonDocument.Parse(output);
            return document.RootElement.Clone();
        }
        catch (JsonException e)
        {
            throw new CaptureException($"Hyper-V step '{step}': pwsh output is not JSON: {e.Message}");
        }
    }

    /// <inheritdoc />
    public async Task CopyFromHostAsync(string remotePath, string localPath, CancellationToken cancellationToken)
    {
        var arguments = new Dictionary<string, string> { ["remote"] = remotePath, ["local"] = Path.GetFullPath(localPath) };
        string body = IsLocal
            ? "$ErrorActionPreference = 'Stop'\n$p = $env:" + ArgumentsVariable + " | ConvertFrom-Json\nCopy-Item -LiteralPath $p.remote -Destination $p.local"
            : "$ErrorActionPreference = 'Stop'\n$p = $env:" + ArgumentsVariable + " | ConvertFrom-Json\n" + SessionOpen() + "try { Copy-Item -FromSession $s -LiteralPath $p.remote -Destination $p.local } finally { Remove-PSSession $s }";
        await RunAsync("copy", body, JsonSerializer.Serialize(arguments), cancellationToken).ConfigureAwait(false);
    }

    /// <inheritdoc />
    public ValueTask DisposeAsync() => ValueTask.CompletedTask;

    private string SessionOpen()
    {
        string credential = _credential is null ? "" :
            $"$cred = [pscredential]::new($env:{UserVariable}, (ConvertTo-SecureString $env:{PasswordVariable} -AsPlainText -Force)); ";
        return credential + $"$s = New-PSSession -ComputerName '{_host.Replace("'", "''", StringComparison.Ordinal)}'{(_useSsl ? " -UseSSL" : "")}{(_credential is null ? "" : " -Credential $cred")}\n";
    }

    private async Task<string> RunAsync(string step, string script, string arguments, CancellationToken cancellationToken)
    {
        var start = new ProcessStartInfo(_pwsh)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            StandardOutputEncoding = Encoding.UTF8,
            StandardErrorEncoding = Encoding.UTF8,
        };
        foreach (string argument in new[] { "-NoProfile", "-NonInteractive", "-Command", "-" })
        {
            start.ArgumentList.Add(argument);
        }
        start.Environment[ArgumentsVariable] = arguments;
        if (_credential is not null)
        {
            start.Environment[UserVariable] = string.IsNullOrEmpty(_credential.Domain) ? _credential.UserName : $"{_credential.Domain}\\{_credential.UserName}";
            start.Environment[PasswordVariable] = _credential.Password;
        }
        using var process = Process.Start(start) ?? throw new CaptureException($"Hyper-V step '{step}': pwsh did not start");
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(_callTimeout);
        try
        {
            await process.StandardInput.WriteAsync(script.AsMemory(), timeout.Token).ConfigureAwait(false);
            process.StandardInput.Close();
            Task<string> stdout = process.StandardOutput.ReadToEndAsync(timeout.Token);
            Task<string> stderr = process.StandardError.ReadToEndAsync(timeout.Token);
            await process.WaitForExitAsync(timeout.Token).ConfigureAwait(false);
            if (process.ExitCode != 0)
            {
                string error = (await stderr.ConfigureAwait(false)).Trim();
                throw new CaptureException($"Hyper-V step '{step}' failed on {_host}: {(error.Length == 0 ? $"pwsh exit code {process.ExitCode}" : error)}");
            }
            return await stdout.ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            process.Kill(entireProcessTree: true);
            throw new CaptureTimeoutException($"Hyper-V step '{step}' on {_host}", _callTimeout, "pwsh still running");
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw;
        }
    }
}
