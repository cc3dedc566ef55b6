using System.Diagnostics;
using System.Text.Json;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Core;

/// <summary>
/// The library surface as a user outside this repository sees it: the four libraries are packed into a temporary
/// feed, tests/PackageConsumer (PackageReference CloudMem.Engine 0.9.0, not a ProjectReference) is restored from that
/// feed into its own packages folder (so a CloudMem 0.9.0 cached by an earlier restore is never used) and run on the
/// basic fixture; the processes it prints must be the ones the guest reported in truth.json.
/// </summary>
public sealed class PackageConsumerTests : IDisposable
{
    private static readonly string[] Libraries = ["VmStateParsers", "Engine", "Connectors", "RemoteCaptures"];
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [SkippableFact]
    public void Packed_engine_lists_the_fixture_processes_from_a_consumer_project()
    {
        string capture = Fixture.Require("memory.lime");
        string repo = Fixture.RepoRoot;
        string feed = Directory.CreateDirectory(_dir.File("feed")).FullName;
        // The tests' own build already compiled the libraries (with their XML docs) in this configuration.
        string configuration = AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
            ? "Release" : "Debug";
        foreach (string library in Libraries)
        {
            Run(repo, "pack", Path.Combine(repo, "src", library), "--no-build", "-c", configuration, "-o", feed, "--nologo");
            Assert.True(File.Exists(Path.Combine(feed, $"CloudMem.{library}.0.9.0.nupkg")), $"dotnet pack wrote no CloudMem.{library}.0.9.0.nupkg");
        }

        // A copy of the consumer outside the repository (no Directory.Build.props, its own obj/ and bin/), with the
        // checked-in nuget.config's local feed pointed at the temporary one.
        string consumer = Directory.CreateDirectory(_dir.File("consumer")).FullName;
        string source = Path.Combine(repo, "tests", "PackageConsumer");
        foreach (string file in new[] { "PackageConsumer.csproj", "Program.cs" })
        {
            File.Copy(Path.Combine(source, file), Path.Combine(consumer, file));
        }
        string config = File.ReadAllText(Path.Combine(source, "nuget.config"));
        Assert.Contains("\"../../artifacts/packages\"", config, StringComparison.Ordinal);
        File.WriteAllText(Path.Combine(consumer, "nuget.config"), config.Replace("../../artifacts/packages", feed, StringComparison.Ordinal));

        string stdout = Run(consumer, "run", "--project", consumer, "--property:RestorePackagesPath=" + _dir.File("packages"), "--", capture);

        // The consumer really restored the packed packages, not the projects.
        Assert.True(Directory.Exists(_dir.File(Path.Combine("packages", "cloudmem.engine", "0.9.0"))), "cloudmem.engine 0.9.0 was not restored from the feed");
        Assert.True(Directory.Exists(_dir.File(Path.Combine("packages", "cloudmem.vmstateparsers", "0.9.0"))), "cloudmem.vmstateparsers 0.9.0 did not come with it");

        var printed = stdout.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(line => line.Split('\t'))
            .Select(f => (Pid: int.Parse(f[0], System.Globalization.CultureInfo.InvariantCulture),
                Ppid: int.Parse(f[1], System.Globalization.CultureInfo.InvariantCulture), Comm: f[2]))
            .Where(p => p.Pid != 0)                         // the idle task heads the task list; /proc does not show it
            .ToList();
        using JsonDocument truth = Fixture.Truth();
        var expected = truth.RootElement.GetProperty("processes").EnumerateArray()
            .Select(p => (Pid: p.GetProperty("pid").GetInt32(), Ppid: p.GetProperty("ppid").GetInt32(), Comm: p.GetProperty("comm").GetString()!))
            .ToList();
        Assert.Equal(expected.Select(p => (p.Pid, p.Ppid)).Order(), printed.Select(p => (p.Pid, p.Ppid)).Order());
        var byPid = printed.ToDictionary(p => p.Pid);
        // /proc shows kernel threads' full names; task->comm keeps the first 15 bytes.
        Assert.All(expected, p => Assert.StartsWith(byPid[p.Pid].Comm, p.Comm, StringComparison.Ordinal));
    }

    /// <summary>Runs dotnet with the arguments in a directory; fails with its output when it exits non-zero.</summary>
    private static string Run(string workingDirectory, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }
        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using Process process = Process.Start(start)!;
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(TimeSpan.FromMinutes(5)))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"dotnet {string.Join(' ', arguments)} did not finish in 5 minutes");
        }
        Assert.True(process.ExitCode == 0, $"dotnet {string.Join(' ', arguments)} exited {process.ExitCode}:\n{stdout.Result}\n{stderr.Result}");
        return stdout.Result;
    }
}
