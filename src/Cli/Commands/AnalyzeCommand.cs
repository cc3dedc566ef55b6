using System.ComponentModel;
using System.Globalization;
using System.Security.Cryptography;
using CloudMem.Connectors.Core;
using CloudMem.Engine.Analysis;
using CloudMem.Engine.Core;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>cloudmem analyze IMAGE|MANIFEST [--out DIR] [--rules DIR] [--yara RULES] [symbol options]</summary>
[Description("Triage a capture in one command: run every plugin that applies, apply the triage rules (ATT&CK-mapped findings with evidence rows), build the timeline, write a case directory (case.sqlite, findings.jsonl, timeline.body)")]
internal sealed class AnalyzeCommand : Command<AnalyzeCommand.Settings>
{
    internal sealed class Settings : AnalysisSettings
    {
        [CommandOption("--out <DIR>")]
        [Description("The case directory to create (default: IMAGE.case next to the image, or NAME.case next to NAME.custody.json); an existing non-empty directory is refused")]
        public string? Out { get; init; }

        public override ValidationResult Validate()
            => OutputFormat != Engine.Output.OutputFormat.Table
                ? ValidationResult.Error("analyze prints a summary; its results are the case files (report.html, report.md, case.sqlite, findings.jsonl), so --output does not apply")
                : base.Validate();
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        Analyzer.LoadRules(settings.Rules);   // a broken rule file is refused before anything is read
        (string image, string? sha256, IReadOnlyList<KeyValuePair<string, string>>? custody) = Resolve(settings.Image, cancellationToken);
        string directory = settings.Out ?? CaseWriter.DefaultDirectory(settings.Image);
        bool existed = Directory.Exists(directory);
        CaseWriter.Prepare(directory);   // refused before the analysis starts, not after it
        CaseReport report;
        try
        {
            using var progress = ProgressDisplay.ForTerminal();
            report = AnalysisRequest.From(settings).Run(image, sha256, custody, progress, cancellationToken);
        }
        catch when (!existed && Directory.Exists(directory) && !Directory.EnumerateFileSystemEntries(directory).Any())
        {
            Directory.Delete(directory);   // nothing was analysed: leave no empty case directory behind
            throw;
        }
        CaseWriter.Write(report, directory);
        WriteSummary(report, directory, Console.Out);
        return (int)ExitCode.Ok;
    }

    /// <summary>
    /// The capture to analyse: <paramref name="argument"/> itself, or, when it is a custody manifest (JSON with a
    /// provider and evidence), the evidence file it names, hashed and compared with the manifest's SHA-256 first.
    /// </summary>
    internal static (string Image, string? Sha256, IReadOnlyList<KeyValuePair<string, string>>? Custody) Resolve(string argument, CancellationToken ct)
    {
        if (!IsManifest(argument))
        {
            return (argument, null, null);
        }
        CustodyManifest manifest;
        try
        {
            manifest = CustodyManifest.Read(argument);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new CaptureException($"{argument}: not a custody manifest ({e.Message.ReplaceLineEndings(" ")})");
        }
        string folder = Path.GetDirectoryName(Path.GetFullPath(argument))!;
        EvidenceRecord evidence = manifest.Evidence.FirstOrDefault(e => Local(e, folder) is not null)
            ?? throw new CaptureException($"{argument}: none of its {manifest.Evidence.Count} evidence items is a file here (looked for each item's localPath and its name next to the manifest)");
        string image = Local(evidence, folder)!;
        string actual;
        using (FileStream stream = File.OpenRead(image))
        {
            actual = Convert.ToHexStringLower(SHA256.HashDataAsync(stream, ct).AsTask().GetAwaiter().GetResult());
        }
        if (!string.Equals(actual, evidence.Sha256, StringComparison.OrdinalIgnoreCase))
        {
            throw new CaptureException($"{image}: SHA-256 {actual} does not match {evidence.Sha256} recorded in {argument}; refusing to analyse a capture that is not the one in custody");
        }
        var facts = new List<KeyValuePair<string, string>>
        {
            new("manifest", Path.GetFullPath(argument)),
            new("case", manifest.CaseId ?? "-"),
            new("provider", manifest.Provider),
            new("target", manifest.TargetId),
            new("method", manifest.Method),
            new("trigger", manifest.Trigger.Id is null ? manifest.Trigger.Kind : $"{manifest.Trigger.Kind} {manifest.Trigger.Id}"),
            new("operator", manifest.Operator is null ? "-" : $"{manifest.Operator.Identity} ({manifest.Operator.Source})"),
            new("host", $"{manifest.Host.Machine} ({manifest.Host.Os}, cloudmem {manifest.Host.CloudmemVersion})"),
            new("started", manifest.StartedUtc.UtcDateTime.ToString("O", CultureInfo.InvariantCulture)),
            new("completed", manifest.CompletedUtc?.UtcDateTime.ToString("O", CultureInfo.InvariantCulture) ?? "-"),
            new("status", manifest.Status.ToString()),
            new("evidence", $"{evidence.Name} {evidence.Uri}"),
            new("evidence size", evidence.SizeBytes.ToString(CultureInfo.InvariantCulture)),
            new("evidence sha256", evidence.Sha256),
            new("evidence verified at capture", evidence.Verified ? "yes" : "no"),
            new("evidence sha256 verified at analysis", "yes"),
        };
        facts.AddRange(manifest.Tools.Select(t => new KeyValuePair<string, string>("tool", $"{t.Name} {t.Version} sha256 {t.Sha256}")));
        return (image, actual, facts);
    }

    private static string? Local(EvidenceRecord evidence, string folder)
    {
        foreach (string? candidate in new[] { evidence.LocalPath, evidence.LocalPath is null ? null : Path.Combine(folder, Path.GetFileName(evidence.LocalPath)),
                     Path.Combine(folder, Path.GetFileName(evidence.Name)) })
        {
            if (candidate is not null && File.Exists(candidate))
            {
                return candidate;
            }
        }
        return null;
    }

    /// <summary>A custody manifest is a small JSON object (by content; a capture never starts with '{').</summary>
    private static bool IsManifest(string path)
    {
        if (!File.Exists(path) || new FileInfo(path).Length > 64 << 20)
        {
            return false;
        }
        using FileStream stream = File.OpenRead(path);
        int first;
        while ((first = stream.ReadByte()) is ' ' or '\t' or '\r' or '\n' or 0xEF or 0xBB or 0xBF)
        {
        }
        return first == '{';
    }

    internal static void WriteSummary(CaseReport report, string directory, TextWriter writer)
    {
        CaseProvenance p = report.Provenance;
        int failed = report.Runs.Count(r => r.Error is not null);
        TimeSpan total = report.Runs.Aggregate(TimeSpan.Zero, (sum, r) => sum + r.Elapsed);
        writer.WriteLine($"{p.ImagePath}: {p.Os} ({p.Kernel}), {report.Runs.Count} plugins in {total.TotalSeconds:0.0}s" + (failed > 0 ? $", {failed} failed" : ""));
        writer.WriteLine("findings: " + string.Join(", ", Enum.GetValues<Severity>().Reverse().Select(s => $"{report.Findings.Count(f => f.Severity == s)} {s.ToString().ToLowerInvariant()}")));
        foreach (Finding f in report.Findings.Take(15))
        {
            writer.WriteLine($"  {f.Severity.ToString().ToUpperInvariant(),-8} {f.RuleId,-10} {f.Technique,-9} {f.Summary}");
        }
        if (report.Findings.Count > 15)
        {
            writer.WriteLine($"  ... and {report.Findings.Count - 15} more (findings.jsonl)");
        }
        writer.WriteLine($"case: {Path.GetFullPath(directory)} (report.html, report.md, case.sqlite, findings.jsonl, timeline.body; {report.Timeline.Count} timeline events)");
        foreach (string note in report.Notes)
        {
            writer.WriteLine("note: " + note);
        }
        writer.WriteLine("plugins:");
        int width = report.Runs.Count == 0 ? 0 : report.Runs.Max(r => r.Plugin.Length);
        foreach (PluginRun run in report.Runs)
        {
            writer.WriteLine($"  {run.Plugin.PadRight(width)}  {run.Elapsed.TotalSeconds,7:0.00}s  " + (run.Error is null ? $"{run.Rows} rows" : "failed: " + run.Error));
        }
    }
}

/// <summary>The options of every command that analyses captures (analyze, fleet analyze, fleet step).</summary>
internal class AnalysisSettings : CaptureSettings
{
    [CommandOption("--rules <DIR>")]
    [Description("A directory of rule files (*.json) added to the shipped triage rules (docs/ARCHITECTURE.md, Analysis)")]
    public string? Rules { get; init; }

    [CommandOption("--yara <FILE|DIR>")]
    [Description("YARA rules to run over each process's memory and over physical memory (needs Debian's libyara9); without it no YARA plugin runs")]
    public string? Yara { get; init; }

    [CommandOption("--symbols <DIR>")]
    [Description("Windows: a symbol directory holding windows/<pdb>/<GUID>-<age>.json.xz or <pdb>/<GUID><age hex>/<pdb> (repeatable; then the per-user cache)")]
    public string[] SymbolDirectories { get; init; } = [];

    [CommandOption(SymbolServerOption.Template)]
    [Description(SymbolServerOption.Description)]
    public string? SymbolServer { get; init; }

    [CommandOption("--no-cache")]
    [Description("Neither read nor write the profile cache (parsed symbol files, a Linux kernel build's kallsyms and BTF; see `cloudmem cache list`)")]
    public bool NoCache { get; init; }

    [CommandOption("--isf <FILE>")]
    [Description("Linux: a Volatility ISF of the kernel, used instead of the BTF found in memory")]
    public string? Isf { get; init; }

    [CommandOption("--system-map <FILE>")]
    [Description("Linux: the kernel's System.map, used only when kallsyms cannot be found in memory")]
    public string? SystemMap { get; init; }

    public override ValidationResult Validate() => SymbolServerOption.Validate(SymbolServer) ?? base.Validate();
}

/// <summary>
/// One analysis as <c>analyze</c> runs it, with every option a plain value (local paths made absolute), so that it can
/// travel as JSON to a fleet worker or a container and run there exactly as here.
/// </summary>
internal sealed record AnalysisRequest(string? Format, string? Rules, string? Yara, string[] Symbols, string? SymbolServer, bool NoCache, string? Isf, string? SystemMap)
{
    public static AnalysisRequest From(AnalysisSettings s)
    {
        static string? Full(string? path) => path is null ? null : Path.GetFullPath(path);
        return new AnalysisRequest(s.Format, Full(s.Rules), Full(s.Yara), s.SymbolDirectories.Select(Path.GetFullPath).ToArray(), s.SymbolServer, s.NoCache, Full(s.Isf), Full(s.SystemMap));
    }

    /// <summary>Opens <paramref name="image"/> (a path or a remote address) and analyses it.</summary>
    public CaseReport Run(string image, string? sha256, IReadOnlyList<KeyValuePair<string, string>>? custody, IProgressSink? progress, CancellationToken cancellationToken)
    {
        using RunMappedMemory memory = CaptureFiles.Open(image, Format);
        return Analyzer.Run(memory, new AnalysisOptions
        {
            ImagePath = image,
            Symbols = new SymbolOptions(Symbols, SymbolServerOption.Parse(SymbolServer), Isf, SystemMap,
                Cache: NoCache ? null : ProfileCache.Default()),
            YaraRules = Yara,
            RulesDirectory = Rules,
            Sha256 = sha256,
            Custody = custody,
            Logger = StderrLogger.FromEnvironment(),
        }, progress, cancellationToken);
    }
}
