using System.Collections;
using System.Management.Automation;
using System.Management.Automation.Runspaces;
using System.Security.Cryptography;
using System.Text;

namespace CloudMem.Tests.Support;

/// <summary>Where the stand-in prints WinPmem's "The system time is: " status text into its standard output, if anywhere.</summary>
public enum WinPmemStatusText
{
    None,
    BeforeImage,
    AfterImage,
}

/// <summary>
/// Runs a generated Windows guest script (PowerShell) for real in a PowerShell 7 runspace hosted in the test process,
/// with a stand-in for winpmem.exe: an executable shell script that writes a slice of a real capture to its standard
/// output when called with '-' (WinPmem's stdout mode), optionally with WinPmem's "The system time is: " status text before or after it.
/// The stand-in records the files under the guest's TEMP directory when it starts and when it has written the image,
/// so a test can check that nothing but the tool binary is ever written there.
/// </summary>
/// <remarks>
/// Two calls of the scripts cannot run on Linux and are replaced in the runspace only, by aliases to clearly named test
/// functions: <c>Get-CimInstance</c> (CIM/WMI is Windows-only) answers <c>TotalPhysicalMemory</c> from
/// <see cref="MemTotalBytes"/>; <c>Get-FileHash</c> is the real cmdlet followed by <c>chmod u+x</c> on the hashed
/// file, because Linux will not start a downloaded file without the execute bit that Windows does not have.
/// TEMP is process-wide: the tests using this class must not run in parallel with each other.
/// </remarks>
public sealed class PowerShellGuest : IDisposable
{
    private const string Stubs = """
function Test-StubGetCimInstanceWin32ComputerSystem {
    param([string]$ClassName)
    if ($ClassName -ne 'Win32_ComputerSystem') { throw "test stub: unexpected CIM class $ClassName" }
    [pscustomobject]@{ TotalPhysicalMemory = [long]$env:CLOUDMEM_TEST_MEMTOTAL }
}
function Test-StubGetFileHashThenMarkExecutable {
    param([string]$Algorithm, [string]$Path)
    Microsoft.PowerShell.Utility\Get-FileHash -Algorithm $Algorithm -Path $Path
    & chmod u+x $Path
    $global:LASTEXITCODE = $null
}
Set-Alias -Name Get-CimInstance -Value Test-StubGetCimInstanceWin32ComputerSystem -Scope Global
Set-Alias -Name Get-FileHash -Value Test-StubGetFileHashThenMarkExecutable -Scope Global
""";

    private readonly TempDir _dir = new();
    private readonly string? _previousTemp;

    /// <summary>
    /// Creates the stand-in tool writing the first <paramref name="imageBytes"/> bytes of <paramref name="source"/>,
    /// then exiting with <paramref name="exitCode"/> (non-zero: after a message on its standard error, as a failed read would).
    /// </summary>
    public PowerShellGuest(string source, long imageBytes, WinPmemStatusText statusText = WinPmemStatusText.None, int exitCode = 0)
    {
        Image = new byte[imageBytes];
        using (FileStream input = File.OpenRead(source))
        {
            input.ReadExactly(Image);
        }
        ImageFile = _dir.File("image.raw");
        File.WriteAllBytes(ImageFile, Image);
        Temp = Directory.CreateDirectory(_dir.File("TEMP")).FullName;
        ToolFile = _dir.File("winpmem-standin");
        const string status = "printf 'The system time is: 21:04:05\\n'\n";
        string before = statusText == WinPmemStatusText.BeforeImage ? status : "";
        string after = statusText == WinPmemStatusText.AfterImage ? status : "";
        File.WriteAllText(ToolFile, $$"""
            #!/bin/sh
            # stand-in for winpmem.exe: '-' writes a real capture (a slice of the basic fixture) to standard output
            [ "$1" = "-" ] || { echo "usage: winpmem -" >&2; exit 2; }
            find "$TEMP" -type f > '{{StartListing}}'
            {{before}}cat '{{ImageFile}}' || exit 1
            {{after}}find "$TEMP" -type f > '{{EndListing}}'
            {{(exitCode == 0 ? "" : "printf 'stand-in: cannot read\\n  physical memory\\n' >&2\n")}}exit {{exitCode}}

            """.Replace("\r\n", "\n", StringComparison.Ordinal));
        ToolSha256 = Convert.ToHexStringLower(SHA256.HashData(File.ReadAllBytes(ToolFile)));
        ImageSha256 = Convert.ToHexStringLower(SHA256.HashData(Image));
        _previousTemp = Environment.GetEnvironmentVariable("TEMP");
        Environment.SetEnvironmentVariable("TEMP", Temp);
    }

    /// <summary>The bytes the stand-in writes (without any status text).</summary>
    public byte[] Image { get; }

    public string ImageFile { get; }

    public string ImageSha256 { get; }

    /// <summary>The guest's TEMP directory (the scripts' work directory goes under it).</summary>
    public string Temp { get; }

    /// <summary>The stand-in's bytes are what the staged-tool URL must serve.</summary>
    public string ToolFile { get; }

    public string ToolSha256 { get; }

    public long MemTotalBytes { get; set; } = 32L << 20;

    /// <summary>Files under TEMP when the stand-in started (null: it never ran).</summary>
    public string[]? FilesAtStart => ReadListing(StartListing);

    /// <summary>Files under TEMP when the stand-in had written the whole image (null: it did not get there).</summary>
    public string[]? FilesAtEnd => ReadListing(EndListing);

    private string StartListing => _dir.File("temp-at-start.txt");

    private string EndListing => _dir.File("temp-at-end.txt");

    /// <summary>Runs the script (saved as a .ps1 outside TEMP) with named parameters; returns its output lines and exit code.</summary>
    public (List<string> Lines, int? ExitCode) Run(string script, IDictionary? parameters = null, TimeSpan? timeout = null)
    {
        string path = _dir.File($"guest-{Guid.NewGuid():N}.ps1");
        File.WriteAllText(path, script, new UTF8Encoding(false));
        Environment.SetEnvironmentVariable("CLOUDMEM_TEST_MEMTOTAL", MemTotalBytes.ToString(System.Globalization.CultureInfo.InvariantCulture));
        InitialSessionState state = InitialSessionState.CreateDefault2();
        using Runspace runspace = RunspaceFactory.CreateRunspace(state);
        runspace.Open();
        using PowerShell shell = PowerShell.Create(runspace);
        shell.AddScript(Stubs).Invoke();
        shell.Commands.Clear();
        shell.AddScript("param($Path, $Arguments) $global:LASTEXITCODE = $null; & $Path @Arguments; 'CLOUDMEM_TEST_EXIT ' + $global:LASTEXITCODE")
            .AddArgument(path).AddArgument(parameters ?? new Hashtable());
        var lines = new List<string>();
        var output = new PSDataCollection<PSObject>();
        output.DataAdded += (_, e) => { lock (lines) { lines.Add(output[e.Index]?.ToString() ?? ""); } };
        IAsyncResult pending = shell.BeginInvoke<PSObject, PSObject>(null, output);
        if (!pending.AsyncWaitHandle.WaitOne(timeout ?? TimeSpan.FromMinutes(2)))
        {
            shell.Stop();
            throw new TimeoutException("the guest script did not finish in time: " + string.Join(" | ", lines));
        }
        try
        {
            shell.EndInvoke(pending);
        }
        catch (RuntimeException e)
        {
            lock (lines) { lines.Add("CLOUDMEM_TEST_THROWN " + e.Message); }
        }
        foreach (ErrorRecord error in shell.Streams.Error)
        {
            lock (lines) { lines.Add("CLOUDMEM_TEST_ERROR " + error); }
        }
        lock (lines)
        {
            string? exit = lines.LastOrDefault(l => l.StartsWith("CLOUDMEM_TEST_EXIT", StringComparison.Ordinal));
            int? code = exit is not null && int.TryParse(exit["CLOUDMEM_TEST_EXIT".Length..].Trim(), out int value) ? value : null;
            return ([.. lines], code);
        }
    }

    /// <summary>Every file left under TEMP.</summary>
    public string[] FilesLeft() => Directory.GetFiles(Temp, "*", SearchOption.AllDirectories);

    /// <summary>Every directory left under TEMP.</summary>
    public string[] DirectoriesLeft() => Directory.GetDirectories(Temp, "*", SearchOption.AllDirectories);

    private static string[]? ReadListing(string path) => File.Exists(path) ? File.ReadAllLines(path).Where(l => l.Length > 0).ToArray() : null;

    public void Dispose()
    {
        Environment.SetEnvironmentVariable("TEMP", _previousTemp);
        Environment.SetEnvironmentVariable("CLOUDMEM_TEST_MEMTOTAL", null);
        _dir.Dispose();
    }
}
