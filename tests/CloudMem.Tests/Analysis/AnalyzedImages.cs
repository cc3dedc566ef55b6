using System.Collections.Concurrent;
using System.Diagnostics;
using CloudMem.Engine.Analysis;
using CloudMem.Engine.Core;
using CloudMem.Engine.Symbols;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Analysis;

/// <summary>
/// xunit class fixture: captures analysed once each (the Windows builder images of the attack, typical, network and
/// clean scenarios, with the Windows 10 19041 kernel unless another is named; the Linux basic and rootkit fixtures), with their case directories written.
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

    /// <summary>The scenario laid out with the kernel of <paramref name="guid"/> (raw file, symbols root).</summary>
    public (string Raw, string Root) WindowsBuilt(string scenario, string guid = WindowsSymbols.Win10) => _images.GetOrAdd($"{scenario}-{guid}", key => new Lazy<(string, string)>(() =>
    {
        (string root, TypeModel types) = WindowsSymbols.Load(guid);
        WindowsScenario loaded = WindowsScenario.Load(Path.Combine(AppContext.BaseDirectory, "scenarios", scenario + ".json"));
        var builder = new WindowsImageBuilder(types, guid, 1);
        if (loaded.Network is not null)
        {
            builder.TcpipSymbols = IsfLoader.Load(SharedFiles.Require("symbols", "windows", "tcpip.pdb",
                WindowsImageBuilder.TcpipTable(loaded.Network, guid) + ".json.xz"));
        }
        (byte[] image, _) = builder.Build(loaded);
        return (_dir.Write($"{scenario}-{guid}.raw", image), root);
    })).Value;

    public Analyzed Windows(string scenario, string guid = WindowsSymbols.Win10) => _cases.GetOrAdd($"windows-{scenario}-{guid}", _ => new Lazy<Analyzed>(() =>
    {
        (string raw, string root) = WindowsBuilt(scenario, guid);
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
