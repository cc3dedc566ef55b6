using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Fleet;
using CloudMem.Engine.Analysis;
using DurableTask.Core;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Options shared by fleet analyze and fleet worker: where the task hub lives.</summary>
internal interface IFleetHubSettings
{
    string? Storage { get; }
    string TaskHub { get; }
    int RecoverySeconds { get; }
}

/// <summary>cloudmem fleet analyze DIR_OR_PREFIX --out CASE --workers N [--storage CONNSTRING] [--task-hub NAME] [analyze's options]</summary>
[Description("Analyse many captures at once: every capture of a directory (or under an s3:// or Blob prefix) analysed as `analyze` does, by N worker processes sharing a Durable Task hub in Azure Storage (a local azurite unless --storage), into CASE/captures/<id>/, with CASE/fleet.json. IMAGE is here the directory or prefix")]
internal sealed class FleetAnalyzeCommand : AsyncCommand<FleetAnalyzeCommand.Settings>
{
    /// <summary>Environment variable carrying the task hub's connection string to the workers (never on their command line).</summary>
    public const string StorageVariable = "CLOUDMEM_FLEET_STORAGE";

    internal sealed class Settings : AnalysisSettings, IFleetHubSettings
    {
        [CommandOption("--out <CASE>")]
        [Description("The fleet case directory: captures/<id>/ per capture (what analyze --out writes) and fleet.json; an existing fleet case is continued (complete captures are kept)")]
        public string? Out { get; init; }

        [CommandOption("--workers <N>")]
        [Description("Worker processes to start on this machine (default 2); each analyses one capture at a time")]
        [DefaultValue(2)]
        public int Workers { get; init; } = 2;

        [CommandOption("--storage <CONNSTRING>")]
        [Description("Azure Storage connection string of the task hub (also CLOUDMEM_FLEET_STORAGE; `UseDevelopmentStorage=true` for an azurite already running on its default ports). Default: start a private in-memory azurite (CLOUDMEM_AZURITE, azurite on PATH, or tests/emulators/setup.sh's)")]
        public string? Storage { get; init; }

        [CommandOption("--task-hub <NAME>")]
        [Description("Durable Task hub name (letters and digits, 3-45; default CloudMemFleet)")]
        [DefaultValue("CloudMemFleet")]
        public string TaskHub { get; init; } = "CloudMemFleet";

        [CommandOption("--recovery-seconds <S>")]
        [Description("How long a capture whose worker died stays claimed before another worker takes it (default 60; the work item's lock is renewed every 5 s while its worker lives)")]
        [DefaultValue(60)]
        public int RecoverySeconds { get; init; } = 60;

        public override ValidationResult Validate()
        {
            if (Out is null)
            {
                return ValidationResult.Error("--out CASE is required");
            }
            if (Workers is < 1 or > 64)
            {
                return ValidationResult.Error("--workers must be 1 to 64");
            }
            return FleetCli.ValidateHub(this) ?? (OutputFormat != Engine.Output.OutputFormat.Table
                ? ValidationResult.Error("fleet analyze prints progress and a summary; its results are CASE/fleet.json and the case directories, so --output does not apply")
                : base.Validate());
        }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        Analyzer.LoadRules(settings.Rules);   // a broken rule file is refused before any worker starts
        var skipped = new List<string>();
        IReadOnlyList<FleetCapture> captures = FleetListing.List(settings.Image, skipped);
        foreach (string line in skipped)
        {
            Console.Error.WriteLine("fleet: skipped " + line);
        }
        if (captures.Count == 0)
        {
            throw new CaptureException($"{settings.Image}: no capture found");
        }
        var store = new FleetCaseStore(settings.Out!);
        store.Create();
        foreach (FleetCapture c in captures)
        {
            File.Delete(Path.Combine(store.Root, ".fleet", "results", c.Id + ".json"));   // progress of this run only
        }
        var clock = Stopwatch.StartNew();
        DateTimeOffset started = DateTimeOffset.UtcNow;
        using LocalAzurite? azurite = settings.Storage is null && Environment.GetEnvironmentVariable(StorageVariable) is not { Length: > 0 }
            ? LocalAzurite.Start(Path.Combine(store.Root, ".fleet", "azurite"))
            : null;
        string storage = azurite?.ConnectionString ?? FleetCli.Storage(settings);
        var hub = new FleetHub(storage, settings.TaskHub, FleetHub.Timings(TimeSpan.FromSeconds(settings.RecoverySeconds)));
        await hub.CreateIfNotExistsAsync();
        string instance = FleetHub.InstanceId(store.Root);
        var job = new FleetJob(store.Root, JsonSerializer.Serialize(AnalysisRequest.From(settings), FleetCaseStore.Json), captures);
        bool fresh = await hub.StartAsync(instance, job);
        Console.Out.WriteLine($"fleet: {captures.Count} captures, {settings.Workers} workers, task hub {settings.TaskHub}"
            + (azurite is null ? "" : " (local azurite)") + (fresh ? $", run {instance}" : $", attached to the running run {instance}"));
        FleetRunRecord Record(IReadOnlyList<FleetOutcome> outcomes, bool final) => new()
        {
            Source = settings.Image, Case = store.Root, TaskHub = settings.TaskHub, Instance = instance, Workers = settings.Workers, StartedUtc = started,
            CompletedUtc = final ? DateTimeOffset.UtcNow : null, Seconds = final ? Math.Round(clock.Elapsed.TotalSeconds, 1) : null, Captures = outcomes,
        };
        FleetOutcome[] current = captures.Select(c => new FleetOutcome { Id = c.Id, Capture = c.Address, Status = "pending", Attempts = store.Attempts(c.Id) }).ToArray();
        store.WriteFleetJson(Record(current, final: false));

        using var workers = new FleetWorkers(settings, storage, store.Root);
        var reported = new HashSet<string>(StringComparer.Ordinal);
        OrchestrationState? state;
        while (true)
        {
            await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            bool changed = false;
            for (int i = 0; i < captures.Count; i++)
            {
                if (!reported.Contains(captures[i].Id) && store.ReadResult(captures[i].Id) is { } outcome)
                {
                    reported.Add(outcome.Id);
                    current[i] = outcome;
                    changed = true;
                    Console.Out.WriteLine($"[{reported.Count}/{captures.Count}] {FleetCli.Line(outcome)}");
                }
            }
            foreach (string line in workers.Exited())
            {
                Console.Out.WriteLine("fleet: " + line);
            }
            if (changed)
            {
                store.WriteFleetJson(Record(current, final: false));
            }
            state = await hub.GetStateAsync(instance);
            if (state?.OrchestrationStatus is OrchestrationStatus.Completed or OrchestrationStatus.Failed or OrchestrationStatus.Terminated)
            {
                break;
            }
            if (workers.AllExited)
            {
                throw new CaptureException($"all {settings.Workers} workers exited before the run finished; their logs: {Path.Combine(store.Root, ".fleet", "worker-*.log")}");
            }
        }
        workers.Dispose();
        store.CleanTemporary();
        if (state.OrchestrationStatus != OrchestrationStatus.Completed)
        {
            throw new CaptureException($"fleet run {instance} ended {state.OrchestrationStatus}: {state.Output?.ReplaceLineEndings(" ")}");
        }
        // The orchestration's output is the record; attempts are counted from the markers now that no worker runs.
        FleetOutcome[] final = FleetHub.Outcomes(state).Select(o => o with { Attempts = store.Attempts(o.Id) }).ToArray();
        foreach (FleetOutcome o in final.Where(o => !reported.Contains(o.Id)))
        {
            Console.Out.WriteLine($"[{captures.Count}/{captures.Count}] {FleetCli.Line(o)}");
        }
        store.WriteFleetJson(Record(final, final: true));
        int failed = final.Count(o => o.Status != "done");
        double minutes = clock.Elapsed.TotalMinutes;
        Console.Out.WriteLine($"fleet: {final.Length - failed} done, {failed} failed, in {clock.Elapsed.TotalSeconds:0.0}s ({final.Length / Math.Max(minutes, 1e-9):0.0} captures/min); "
            + $"{final.Sum(o => o.Attempts)} analyses started for {final.Length} captures; findings: "
            + string.Join(", ", Enum.GetValues<Severity>().Reverse().Select(s => s.ToString().ToLowerInvariant()).Select(s => $"{final.Sum(o => o.Findings?.GetValueOrDefault(s) ?? 0)} {s}")));
        foreach (FleetOutcome o in final.Where(o => o.Status != "done"))
        {
            Console.Out.WriteLine($"  FAILED {o.Id}: {o.Error}");
        }
        Console.Out.WriteLine($"case: {store.Root} (fleet.json, captures/<id>/)");
        return failed == 0 ? (int)ExitCode.Ok : (int)ExitCode.Error;
    }
}

/// <summary>cloudmem fleet worker: one worker process of a fleet run (started by fleet analyze, or on other machines sharing the task hub).</summary>
[Description("Run one fleet worker: takes capture analyses from the Durable Task hub (--storage or CLOUDMEM_FLEET_STORAGE, --task-hub) until stopped (SIGTERM) or its --parent-pid exits")]
internal sealed class FleetWorkerCommand : AsyncCommand<FleetWorkerCommand.Settings>
{
    internal sealed class Settings : CommandSettings, IFleetHubSettings
    {
        [CommandOption("--storage <CONNSTRING>")]
        [Description("Azure Storage connection string of the task hub (default: CLOUDMEM_FLEET_STORAGE)")]
        public string? Storage { get; init; }

        [CommandOption("--task-hub <NAME>")]
        [Description("Durable Task hub name (default CloudMemFleet)")]
        [DefaultValue("CloudMemFleet")]
        public string TaskHub { get; init; } = "CloudMemFleet";

        [CommandOption("--recovery-seconds <S>")]
        [Description("As for fleet analyze (default 60)")]
        [DefaultValue(60)]
        public int RecoverySeconds { get; init; } = 60;

        [CommandOption("--parent-pid <PID>")]
        [Description("Stop when this process exits (fleet analyze passes its own)")]
        public int? ParentPid { get; init; }

        public override ValidationResult Validate() => FleetCli.ValidateHub(this) ?? ValidationResult.Success();
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var hub = new FleetHub(FleetCli.Storage(settings), settings.TaskHub, FleetHub.Timings(TimeSpan.FromSeconds(settings.RecoverySeconds)));
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, signal =>
        {
            signal.Cancel = true;
            stop.Cancel();
        });
        if (settings.ParentPid is int parent)
        {
            _ = Task.Run(async () =>
            {
                while (!stop.IsCancellationRequested && Alive(parent))
                {
                    await Task.Delay(TimeSpan.FromSeconds(2), CancellationToken.None);
                }
                await stop.CancelAsync();
            }, CancellationToken.None);
        }
        void Log(string message) => Console.Error.WriteLine($"{DateTime.UtcNow:HH:mm:ss} {FleetAnalysis.WorkerName}: {message}");
        await hub.RunWorkerAsync(item =>
        {
            Log($"analysing {item.Id} ({item.Address})");
            FleetOutcome outcome = FleetAnalysis.AnalyseOne(item);
            Log(FleetCli.Line(outcome));
            return outcome;
        }, Log, stop.Token);
        return (int)ExitCode.Ok;
    }

    private static bool Alive(int pid)
    {
        try
        {
            using var process = Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}

/// <summary>The worker processes of one fleet analyze (children of this process; each logs to CASE/.fleet/worker-K.log).</summary>
internal sealed class FleetWorkers : IDisposable
{
    private readonly List<(Process Process, StreamWriter Log, int Number)> _workers = [];
    private readonly HashSet<int> _reported = [];

    public FleetWorkers(FleetAnalyzeCommand.Settings settings, string storage, string caseRoot)
    {
        for (int k = 1; k <= settings.Workers; k++)
        {
            ProcessStartInfo start = FleetCli.Self();
            foreach (string a in new[] { "fleet", "worker", "--task-hub", settings.TaskHub, "--parent-pid", Environment.ProcessId.ToString(CultureInfo.InvariantCulture),
                         "--recovery-seconds", settings.RecoverySeconds.ToString(CultureInfo.InvariantCulture) })
            {
                start.ArgumentList.Add(a);
            }
            start.Environment[FleetAnalyzeCommand.StorageVariable] = storage;
            start.RedirectStandardOutput = true;
            start.RedirectStandardError = true;
            var log = new StreamWriter(Path.Combine(caseRoot, ".fleet", $"worker-{k}.log"), append: true) { AutoFlush = true };
            Process process = Process.Start(start) ?? throw new CaptureException("could not start a fleet worker process");
            process.OutputDataReceived += (_, e) => Write(log, e.Data);
            process.ErrorDataReceived += (_, e) => Write(log, e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            _workers.Add((process, log, k));
            Console.Out.WriteLine($"fleet: worker {k} started, pid {process.Id}");
        }
    }

    private static void Write(StreamWriter log, string? line)
    {
        if (line is not null)
        {
            lock (log)
            {
                log.WriteLine(line);
            }
        }
    }

    public bool AllExited => _workers.All(w => w.Process.HasExited);

    /// <summary>One line per worker that exited since the last call.</summary>
    public IEnumerable<string> Exited()
    {
        foreach ((Process process, _, int number) in _workers)
        {
            if (process.HasExited && _reported.Add(number))
            {
                int left = _workers.Count(w => !w.Process.HasExited);
                yield return $"worker {number} (pid {process.Id}) exited with code {process.ExitCode}; {left} left (its capture goes to another worker)";
            }
        }
    }

    public void Dispose()
    {
        foreach ((Process process, StreamWriter log, _) in _workers)
        {
            try
            {
                if (!process.HasExited)
                {
                    process.Kill(entireProcessTree: true);   // the run is over: nothing of value is in flight
                    process.WaitForExit(5000);
                }
            }
            catch (InvalidOperationException)
            {
            }
            process.Dispose();
            lock (log)
            {
                log.Dispose();
            }
        }
        _workers.Clear();
    }
}

internal static class FleetCli
{
    public static ValidationResult? ValidateHub(IFleetHubSettings s)
    {
        if (s.TaskHub.Length is < 3 or > 45 || !char.IsAsciiLetter(s.TaskHub[0]) || !s.TaskHub.All(char.IsAsciiLetterOrDigit))
        {
            return ValidationResult.Error($"--task-hub must be 3-45 letters and digits starting with a letter, not '{s.TaskHub}'");
        }
        return s.RecoverySeconds is < 5 or > 3600 ? ValidationResult.Error("--recovery-seconds must be 5 to 3600") : null;
    }

    public static string Storage(IFleetHubSettings s) => s.Storage
        ?? (Environment.GetEnvironmentVariable(FleetAnalyzeCommand.StorageVariable) is { Length: > 0 } fromEnv ? fromEnv
            : throw new CaptureException($"no task hub storage: pass --storage or set {FleetAnalyzeCommand.StorageVariable}"));

    /// <summary>This program, to start another command of it (dotnet + cloudmem.dll, or the apphost).</summary>
    public static ProcessStartInfo Self()
    {
        string host = Environment.ProcessPath ?? "dotnet";
        var start = new ProcessStartInfo(host);
        if (Path.GetFileNameWithoutExtension(host) == "dotnet")
        {
            start.ArgumentList.Add(typeof(FleetCli).Assembly.Location);
        }
        return start;
    }

    /// <summary>One progress line: id, status, time, worker, attempts, findings or the reason it failed.</summary>
    public static string Line(FleetOutcome o)
    {
        string counts = o.Findings is null ? "" : string.Join(", ", o.Findings.Where(f => f.Value > 0).Select(f => $"{f.Value} {f.Key}"));
        string findings = o.Findings is null ? "" : "; findings: " + (counts.Length == 0 ? "none" : counts);
        return o.Status == "done"
            ? $"{o.Id}: done in {o.Seconds:0.0}s by {o.Worker ?? "an earlier run"} (analyses started: {o.Attempts}){findings}"
            : $"{o.Id}: FAILED after {o.Attempts} attempt(s): {o.Error}";
    }
}
