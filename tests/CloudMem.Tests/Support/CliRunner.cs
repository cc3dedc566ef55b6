using System.Diagnostics;

namespace CloudMem.Tests.Support;

/// <summary>
/// Runs the real cloudmem CLI as a child process: the CLI project's own build output (src/Cli/bin/CONFIG/TFM, with its
/// deps.json and every package assembly), not the copy in the test output, whose folder lacks the packages that the
/// test project's ASP.NET Core framework reference supplies instead (Microsoft.Extensions.Logging.Abstractions).
/// </summary>
public static class CliRunner
{
    /// <summary>The CLI build the tests run.</summary>
    public static string CliDll { get; } = FindCli();

    private static string FindCli()
    {
        // AppContext.BaseDirectory is tests/CloudMem.Tests/bin/CONFIG/TFM/.
        var output = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        string cli = Path.Combine(Fixture.RepoRoot, "src", "Cli", "bin", output.Parent!.Name, output.Name, "cloudmem.dll");
        return File.Exists(cli) ? cli : Path.Combine(AppContext.BaseDirectory, "cloudmem.dll");
    }

    /// <summary>Runs cloudmem with <paramref name="args"/>; optionally as another user (setpriv) and with extra environment.</summary>
    public static (int Exit, string Out, string Err) Run(IReadOnlyDictionary<string, string>? environment, string? user, params string[] args)
    {
        var start = new ProcessStartInfo(user is null ? "dotnet" : "setpriv")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
        };
        if (user is not null)
        {
            foreach (string a in new[] { "--reuid=" + user, "--regid=" + user, "--clear-groups", "dotnet" })
            {
                start.ArgumentList.Add(a);
            }
            start.Environment["DOTNET_CLI_HOME"] = Path.GetTempPath();
            start.Environment["HOME"] = Path.GetTempPath();
        }
        foreach ((string key, string value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }
        start.ArgumentList.Add(CliDll);
        foreach (string arg in args)
        {
            start.ArgumentList.Add(arg);
        }
        using Process process = Process.Start(start)!;
        process.StandardInput.Close();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        Assert.True(process.WaitForExit(120_000), "cloudmem did not finish in 2 minutes");
        return (process.ExitCode, stdout.Result, stderr.Result);
    }
}
