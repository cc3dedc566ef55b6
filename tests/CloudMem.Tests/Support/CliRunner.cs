using System.Diagnostics;

namespace CloudMem.Tests.Support;

/// <summary>Runs the real cloudmem CLI (the test output's cloudmem.dll) as a child process.</summary>
public static class CliRunner
{
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
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "cloudmem.dll"));
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
