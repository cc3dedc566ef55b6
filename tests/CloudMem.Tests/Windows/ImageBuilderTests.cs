using System.Diagnostics;
using System.Security.Cryptography;
using CloudMem.Engine.Symbols;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Windows;

/// <summary>The Windows test-image builder: its scenario files and its command-line entry point.</summary>
public sealed class ImageBuilderTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string ScenarioFile(string name) => Path.Combine(AppContext.BaseDirectory, "scenarios", name);

    [SkippableTheory]
    [InlineData("attack.json")]
    [InlineData("typical.json")]
    [InlineData("network.json")]
    public void Scenario_files_are_the_built_in_scenarios(string file)
    {
        TypeModel types = IsfLoader.Load(WindowsSymbols.Isf(WindowsPsListTests.Win10));
        WindowsScenario builtIn = file switch
        {
            "attack.json" => WindowsImageBuilder.AttackScenario(),
            "network.json" => WindowsImageBuilder.NetworkScenario(),
            _ => new WindowsScenario { Processes = WindowsImageBuilder.TypicalScenario() },
        };
        TypeModel? tcpip = builtIn.Network is null ? null : IsfLoader.Load(SharedFiles.Require("symbols", "windows", "tcpip.pdb",
            WindowsImageBuilder.TcpipTable(builtIn.Network, WindowsPsListTests.Win10) + ".json.xz"));
        byte[] fromFile = new WindowsImageBuilder(types, WindowsPsListTests.Win10, 1) { TcpipSymbols = tcpip }.Build(WindowsScenario.Load(ScenarioFile(file))).Image;
        byte[] fromCode = new WindowsImageBuilder(types, WindowsPsListTests.Win10, 1) { TcpipSymbols = tcpip }.Build(builtIn).Image;
        Assert.Equal(SHA256.HashData(fromCode), SHA256.HashData(fromFile));
    }

    [SkippableFact]
    public void Command_line_writes_image_and_manifest()
    {
        string isf = WindowsSymbols.Isf(WindowsPsListTests.Win11);
        string tool = Path.Combine(AppContext.BaseDirectory, "cloudmem-imagebuilder.dll");
        string image = Path.Combine(_dir.Path, "w11.raw");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { tool, "--isf", isf, "--out", image, "--scenario", ScenarioFile("attack.json"), "--size", "48m" })
        {
            start.ArgumentList.Add(a);
        }
        using Process process = Process.Start(start)!;
        string stdout = process.StandardOutput.ReadToEnd();
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, stderr);
        Assert.Contains("9 listed + 1 unlinked processes", stdout);
        Assert.Equal(48L << 20, new FileInfo(image).Length);
        var manifest = System.Text.Json.JsonSerializer.Deserialize<WindowsImageManifest>(File.ReadAllText(Path.ChangeExtension(image, ".manifest.json")), WindowsScenario.Json)!;
        Assert.Equal("0CE4A95C0CD782A7596B034D8648E585", manifest.PdbGuid);
        Assert.Contains(manifest.Processes, p => p.ImageFileName == "powershell.exe" && p.InjectedRegions.Count == 2);
    }

    [SkippableFact]
    public void Bad_arguments_exit_2_with_one_line()
    {
        string tool = Path.Combine(AppContext.BaseDirectory, "cloudmem-imagebuilder.dll");
        var start = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (string a in new[] { tool, "--isf", Path.Combine(_dir.Path, "nothing.json"), "--out", Path.Combine(_dir.Path, "x.raw") })
        {
            start.ArgumentList.Add(a);
        }
        using Process process = Process.Start(start)!;
        string stderr = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.Equal(2, process.ExitCode);
        Assert.StartsWith("cloudmem-imagebuilder: error: ", stderr);
        Assert.DoesNotContain("   at ", stderr);
    }
}
