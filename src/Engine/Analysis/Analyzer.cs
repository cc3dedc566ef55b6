using System.Diagnostics;
using System.Security.Cryptography;
using CloudMem.Engine.Core;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Windows;
using CloudMem.VmStateParsers;
using Microsoft.Extensions.Logging;

namespace CloudMem.Engine.Analysis;

/// <summary>What one <see cref="Analyzer.Run"/> takes beyond the capture.</summary>
public sealed record AnalysisOptions
{
    /// <summary>The capture's path or address (provenance, messages; hashed when it is a local file and <see cref="Sha256"/> is null).</summary>
    public required string ImagePath { get; init; }

    /// <summary>Symbol inputs (Windows symbol directories, Linux ISF or System.map).</summary>
    public SymbolOptions Symbols { get; init; } = SymbolOptions.None;

    /// <summary>YARA rules (a file or directory): the YARA plugins run only when given.</summary>
    public string? YaraRules { get; init; }

    /// <summary>A directory of user rule files (<c>*.json</c>) added to the shipped rules, or null.</summary>
    public string? RulesDirectory { get; init; }

    /// <summary>The plugins to choose from; null for every registered plugin.</summary>
    public IReadOnlyList<IPlugin>? Plugins { get; init; }

    /// <summary>The capture's SHA-256 when already known (verified against a custody manifest), or null to compute it.</summary>
    public string? Sha256 { get; init; }

    /// <summary>The custody manifest's facts, when the analysis started from one.</summary>
    public IReadOnlyList<KeyValuePair<string, string>>? Custody { get; init; }

    /// <summary>Diagnostics (timings, decisions), or null.</summary>
    public ILogger? Logger { get; init; }
}

/// <summary>
/// <c>analyze</c>: finds which OS the capture holds, runs every plugin for it that needs nothing the user did not
/// give (no single-process, output-directory or registry-key plugins; YARA only with rules; secrets stay redacted;
/// never the <see cref="Excluded"/> ones),
/// each timed and a failing one recorded with its error while the others go on; then applies the triage rules and
/// builds the timeline. <see cref="Run"/> does not own the memory it reads.
/// </summary>
public static class Analyzer
{
    /// <summary>Plugins <c>analyze</c> never runs: hashdump and cachedump would copy account password hashes (NT, DCC2)
    /// into the case, which is shared more widely than the capture. Run them by hand when the case needs them.</summary>
    public static IReadOnlySet<string> Excluded { get; } = new HashSet<string>(StringComparer.Ordinal) { "windows.hashdump", "windows.cachedump" };

    private const PluginInputs Unsupplied = PluginInputs.SingleProcess | PluginInputs.OutputDirectory | PluginInputs.KeyPath;

    /// <summary>The rules <c>analyze</c> applies: the shipped ones and those of <paramref name="rulesDirectory"/>.</summary>
    /// <exception cref="RuleException">A user rule does not load (one line naming file, rule and column).</exception>
    public static IReadOnlyList<TriageRule> LoadRules(string? rulesDirectory)
        => TriageRules.Combine(TriageRules.BuiltIn(TargetOs.Linux), TriageRules.BuiltIn(TargetOs.Windows),
            rulesDirectory is null ? [] : TriageRules.FromDirectory(rulesDirectory));

    /// <summary>Whether <c>analyze</c> runs <paramref name="plugin"/> on a capture of <paramref name="os"/>.</summary>
    public static bool Runs(PluginInfo plugin, TargetOs os, bool yara)
    {
        ArgumentNullException.ThrowIfNull(plugin);
        return plugin.Os == os && (plugin.Inputs & Unsupplied) == 0 && (yara || (plugin.Inputs & PluginInputs.YaraRules) == 0)
               && !Excluded.Contains(plugin.Name);
    }

    /// <summary>Analyses <paramref name="memory"/>.</summary>
    /// <exception cref="RuleException">A user rule does not load (checked before anything runs).</exception>
    /// <exception cref="KernelNotFoundException">Neither a Linux nor a Windows kernel was found.</exception>
    public static CaseReport Run(IPhysicalMemory memory, AnalysisOptions options, IProgressSink? progress = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(memory);
        ArgumentNullException.ThrowIfNull(options);
        DateTimeOffset started = DateTimeOffset.UtcNow;
        IReadOnlyList<TriageRule> rules = LoadRules(options.RulesDirectory);
        var stage = new StageProgress(progress);
        var context = new PluginContext(memory, options.ImagePath, options.Symbols, stage, options.Logger);
        stage.Start("analyze: finding the kernel");
        (TargetOs os, string kernel) = DetectOs(context, ct);
        IPlugin[] plugins = [.. (options.Plugins ?? PluginRegistry.All).Where(p => Runs(p.Info, os, options.YaraRules is not null))];
        var runs = new List<PluginRun>();
        var tables = new List<IRowsReport>();
        for (int i = 0; i < plugins.Length; i++)
        {
            IPlugin plugin = plugins[i];
            stage.Prefix = $"analyze {i + 1}/{plugins.Length} {plugin.Info.Name}: ";
            stage.Start($"analyze {i + 1}/{plugins.Length} {plugin.Info.Name}");
            (PluginRun run, IRowsReport? table) = RunOne(plugin, context, options, ct);
            runs.Add(run);
            if (table is not null)
            {
                tables.Add(table);
            }
            options.Logger?.LogInformation("analyze: {Plugin} {Rows} rows in {Seconds:0.00}s{Error}", run.Plugin, run.Rows, run.Elapsed.TotalSeconds,
                run.Error is null ? "" : ": " + run.Error);
        }
        stage.Prefix = "";
        stage.Start("analyze: rules and timeline");
        IReadOnlyList<Finding> findings = RuleEngine.Evaluate(rules, tables);
        var notes = new List<string>();
        DateTimeOffset? boot = null;
        if (os == TargetOs.Linux)
        {
            boot = LinuxClock.BootTime(context.Linux(ct), out string? why);
            notes.Add(boot is { } b
                ? $"boot time {UtcTimeConverter.Format(b)} (the kernel timekeeper's offs_real): Linux process starts and dmesg times are placed from it"
                : $"boot time unknown ({why})");
        }
        IReadOnlyList<TimelineEvent> timeline = CaseTimeline.Build(tables, notes, boot);
        string? sha256 = options.Sha256 ?? HashOf(options.ImagePath, ct);
        var provenance = new CaseProvenance(options.ImagePath, FormatOf(memory), (long)memory.Runs.Aggregate(0UL, (sum, r) => sum + r.Length),
            sha256, os.ToString(), kernel, started, options.Custody);
        return new CaseReport(provenance, runs, tables, findings, CaseViews.Processes(tables, boot), CaseViews.Connections(tables), timeline)
        {
            Notes = notes,
        };
    }

    private static (PluginRun Run, IRowsReport? Table) RunOne(IPlugin plugin, PluginContext context, AnalysisOptions options, CancellationToken ct)
    {
        var arguments = new PluginArguments
        {
            YaraRules = (plugin.Info.Inputs & PluginInputs.YaraRules) != 0 ? options.YaraRules : null,
        };
        var clock = Stopwatch.StartNew();
        try
        {
            IReport report = plugin.Run(context, arguments, ct);
            IRowsReport? table = report as IRowsReport;
            return (new PluginRun(plugin.Info.Name, clock.Elapsed, table?.BoxedRows.Count ?? 0, null, report.Notes), table);
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
#pragma warning disable CA1031 // one plugin's failure (a bug, missing symbols) is recorded and the analysis goes on
        catch (Exception e)
#pragma warning restore CA1031
        {
            return (new PluginRun(plugin.Info.Name, clock.Elapsed, 0, OneLine(e), []), null);
        }
    }

    /// <summary>An exception as one line: typed engine errors by their message, others with their type.</summary>
    internal static string OneLine(Exception e)
    {
        string message = e.Message.ReplaceLineEndings(" ").Trim();
        return e is KernelNotFoundException or Symbols.SymbolFormatException or Yara.YaraRuleException or Yara.YaraUnavailableException
            or DumpFormatException or IOException
            ? message
            : $"{e.GetType().Name}: {message}";
    }

    private static (TargetOs Os, string Kernel) DetectOs(PluginContext context, CancellationToken ct)
    {
        try
        {
            LinuxContext linux = context.Linux(ct);
            return (TargetOs.Linux, linux.Kernel.Banner.Text.Trim());
        }
        catch (KernelNotFoundException linuxMissing)
        {
            try
            {
                WindowsKernel windows = context.Windows(ct);
                return (TargetOs.Windows, $"{windows.Image.PdbName} {windows.Image.Guid}-{windows.Image.Age} at 0x{windows.KernelBase:X}");
            }
            catch (KernelNotFoundException windowsMissing)
            {
                throw new KernelNotFoundException(
                    $"{context.Source}: no Linux kernel ({linuxMissing.Message.ReplaceLineEndings(" ")}) and no Windows kernel ({windowsMissing.Message.ReplaceLineEndings(" ")})");
            }
        }
    }

    private static string FormatOf(IPhysicalMemory memory) => memory is ICaptureMetadata { Metadata: { } metadata } ? metadata.Format : memory.Description;

    private static string? HashOf(string path, CancellationToken ct)
    {
        if (!File.Exists(path))
        {
            return null;
        }
        using FileStream stream = File.OpenRead(path);
        return System.Convert.ToHexStringLower(SHA256.HashDataAsync(stream, ct).AsTask().GetAwaiter().GetResult());
    }

    /// <summary>The plugins' own progress under the name of the plugin running.</summary>
    private sealed class StageProgress(IProgressSink? inner) : IProgressSink
    {
        private volatile string _prefix = "";

        public string Prefix
        {
            get => _prefix;
            set => _prefix = value;
        }

        public void Start(string stage) => inner?.Report(stage, 0, 0);

        public void Report(string stage, long done, long total) => inner?.Report(_prefix + stage, done, total);
    }
}
