using CloudMem.Engine.Analysis;
using CloudMem.Engine.Core;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Analysis;

/// <summary>The fleet tests share one <see cref="FleetCases"/> (five analyses, built once).</summary>
[CollectionDefinition(Name)]
public sealed class FleetCollection : ICollectionFixture<FleetCases>
{
    public const string Name = "Fleet cases";
}

/// <summary>
/// xunit collection fixture: a fleet case laid out as the fleet runner writes it, <c>CASE/captures/ID/</c>, each capture
/// analysed by the real path (<see cref="Analyzer.Run"/> then <see cref="CaseWriter.Write"/>): the Linux basic and rootkit
/// fixtures (the rootkit with a YARA rule for the AWS key id planted in rkhelper's heap, when libyara is there) and the
/// Windows builder images of the attack, network (reverse shell to 203.0.113.7:4444) and clean scenarios.
/// </summary>
public sealed class FleetCases : IDisposable
{
    private readonly AnalyzedImages _images = new();
    private readonly Lazy<IReadOnlyDictionary<string, CaseReport>> _reports;

    public FleetCases() => _reports = new Lazy<IReadOnlyDictionary<string, CaseReport>>(Build);

    /// <summary>The fleet case directory.</summary>
    public string Case => Path.Combine(_images.Root, "fleet.case");

    /// <summary>The YARA rule file (rule <c>planted_key_id</c>).</summary>
    public string YaraRules => Path.Combine(_images.Root, "fleet-keyid.yar");

    /// <summary>Whether the rootkit capture was scanned with <see cref="YaraRules"/> (libyara present).</summary>
    public bool YaraRan { get; private set; }

    /// <summary>Each capture's report, by capture id (built on first use).</summary>
    public IReadOnlyDictionary<string, CaseReport> Reports => _reports.Value;

    /// <summary>The case directory of one capture.</summary>
    public string CaptureDirectory(string id) => Path.Combine(Case, "captures", id);

    private IReadOnlyDictionary<string, CaseReport> Build()
    {
        using System.Text.Json.JsonDocument truth = Fixture.Truth("rootkit");
        string keyId = truth.RootElement.GetProperty("rootkit").GetProperty("secrets").GetProperty("aws_access_key_id").GetString()!;
        File.WriteAllText(YaraRules, $"rule planted_key_id\n{{\n    strings:\n        $a = \"{keyId}\"\n    condition:\n        $a\n}}\n");
        try
        {
            CloudMem.Engine.Yara.YaraRules.Compile(YaraRules).Dispose();
            YaraRan = true;
        }
        catch (CloudMem.Engine.Yara.YaraUnavailableException) when (Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") != "1")
        {
            YaraRan = false;
        }
        var reports = new Dictionary<string, CaseReport>(StringComparer.Ordinal)
        {
            ["linux-basic"] = Analyze("linux-basic", Fixture.Require("memory.raw", "basic"), SymbolOptions.None, null),
            ["linux-rootkit"] = Analyze("linux-rootkit", Fixture.Require("memory.raw", "rootkit"), SymbolOptions.None, YaraRan ? YaraRules : null),
        };
        foreach (string scenario in new[] { "attack", "network", "clean" })
        {
            (string raw, string root) = _images.WindowsBuilt(scenario);
            reports["win-" + scenario] = Analyze("win-" + scenario, raw, new SymbolOptions([root]), null);
        }
        return reports;
    }

    private CaseReport Analyze(string id, string image, SymbolOptions symbols, string? yara)
    {
        using RunMappedMemory memory = CaptureOpener.Open(image);
        CaseReport report = Analyzer.Run(memory, new AnalysisOptions { ImagePath = image, Symbols = symbols, YaraRules = yara });
        string directory = CaptureDirectory(id);
        CaseWriter.Prepare(directory);
        CaseWriter.Write(report, directory);
        return report;
    }

    public void Dispose() => _images.Dispose();
}
