using System.Collections.Concurrent;
using System.Diagnostics;
using CloudMem.Engine.Analysis;
using CloudMem.Engine.Core;
using CloudMem.Engine.Symbols;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Analysis;

/// <summary>
/// xunit class fixture: captures analysed once each (the Windows 10 19041 builder images of the attack, typical,
/// network and clean scenarios; the Linux basic and rootkit fixtures), with their case directories written.
/// </summary>
public sealed class AnalyzedImages : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly ConcurrentDictionary<string, Lazy<Analyzed>> _cases = new();

    /// <summary>One analysed capture.</summary>
    public sealed record Analyzed(string Image, string? SymbolRoot, CaseReport Report, string CaseDirectory, TimeSpan Elapsed);

    public string Root => _dir.Path;

    /// <summary>A Windows scenario file (tests/CloudMem.ImageBuilder/scenarios) laid out with the Windows 10 19041 kernel.</summary>
    public string WindowsImage(string scenario) => WindowsBuilt(scenario).Raw;

    private readonly ConcurrentDictionary<string, Lazy<(string Raw, string Root)>> _images = new();

    public (string Raw, string Root) WindowsBuilt(string scenario) => _images.GetOrAdd(scenario, s => new Lazy<(string, string)>(() =>
    {
        (string root, TypeModel types) = WindowsSymbols.Load(WindowsSymbols.Win10);
        WindowsScenario loaded = WindowsScenario.Load(Path.Combine(AppContext.BaseDirectory, "scenarios", s + ".json"));
        var builder = new WindowsImageBuilder(types, WindowsSymbols.Win10, 1);
        if (loaded.Network is not null)
        {
            builder.TcpipSymbols = IsfLoader.Load(SharedFiles.Require("symbols", "windows", "tcpip.pdb",
                WindowsImageBuilder.TcpipTable(loaded.Network, WindowsSymbols.Win10) + ".json.xz"));
        }
        (byte[] image, _) = builder.Build(loaded);
        return (_dir.Write($"{s}.raw", image), root);
    })).Value;

    public Analyzed Windows(string scenario) => _cases.GetOrAdd("windows-" + scenario, _ => new Lazy<Analyzed>(() =>
    {
        (string raw, string root) = WindowsBuilt(scenario);
        return Analyze(raw, new SymbolOptions([root]), root);
    })).Value;

    public Analyzed Linux(string variant, string? rules = null) => _cases.GetOrAdd($"linux-{variant}-{rules}", _ => new Lazy<Analyzed>(() =>
        Analyze(Fixture.Require("memory.raw", variant), SymbolOptions.None, null, rules))).Value;

    private Analyzed Analyze(string image, SymbolOptions symbols, string? root, string? rules = null)
    {
        var clock = Stopwatch.StartNew();
        using RunMappedMemory memory = CaptureOpener.Open(image);
        CaseReport report = Analyzer.Run(memory, new AnalysisOptions { ImagePath = image, Symbols = symbols, RulesDirectory = rules });
        string directory = Path.Combine(_dir.Path, Path.GetFileName(image) + "-" + Guid.NewGuid().ToString("N")[..8] + ".case");
        CaseWriter.Prepare(directory);
        CaseWriter.Write(report, directory);
        return new Analyzed(image, root, report, directory, clock.Elapsed);
    }

    public void Dispose() => _dir.Dispose();
}
