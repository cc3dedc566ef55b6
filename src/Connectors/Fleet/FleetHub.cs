using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using CloudMem.Connectors.Azure;
using DurableTask.AzureStorage;
using DurableTask.Core;
using DurableTask.Core.Exceptions;

namespace CloudMem.Connectors.Fleet;

/// <summary>One capture's analysis as an activity sees it: the case directory, the capture, and the analysis options (opaque JSON of the CLI).</summary>
internal sealed record FleetWorkItem(string Case, string Id, string Address, string Options);

/// <summary>The input of a fleet run's orchestration.</summary>
internal sealed record FleetJob(string Case, string Options, IReadOnlyList<FleetCapture> Captures);

/// <summary>
/// A fleet analysis on the Durable Task Framework with its Azure Storage backend (azurite locally): ONE orchestration
/// per fleet run fans out one activity per capture and waits for all of them. Why one per run rather than one per capture:
/// the run's result is a single durable record (the orchestration's output: every capture's outcome, in order), the
/// client waits on one instance, and the instance id is derived from the case directory, so a second <c>fleet analyze</c>
/// on the same case while one is running attaches to it instead of starting a competing run. Exactly-once results come
/// from two things together: the orchestration's history (an activity whose completion is recorded is never scheduled
/// again when the orchestration replays after a worker dies), and the activity itself being idempotent (an activity
/// re-delivered after its worker was killed finds captures/&lt;id&gt;/ complete and returns it, or analyses into a
/// fresh temporary directory that is renamed into place only when whole: see <see cref="FleetCaseStore"/>).
/// Each worker process runs one activity at a time (an analysis already uses every core it can).
/// </summary>
internal sealed class FleetHub
{
    public const string OrchestrationName = "CloudMemFleetAnalysis";
    public const string ActivityName = "CloudMemFleetCapture";

    private readonly AzureStorageOrchestrationService _service;
    private readonly TaskHubClient _client;

    public FleetHub(string connectionString, string taskHub, DurableHubTimings timings, int activitiesPerWorker = 1)
    {
        TaskHub = taskHub;
        AzureStorageOrchestrationServiceSettings settings = timings.ServiceSettings(connectionString, taskHub);
        settings.MaxConcurrentTaskActivityWorkItems = activitiesPerWorker;
        _service = new AzureStorageOrchestrationService(settings);
        _client = new TaskHubClient(_service);
    }

    public string TaskHub { get; }

    /// <summary>The hub's timings for a given recovery time: how long until a killed worker's capture is handed to another worker.</summary>
    public static DurableHubTimings Timings(TimeSpan recovery) => new()
    {
        WorkItemVisibility = recovery,
        ControlVisibility = recovery,
        Lease = recovery < TimeSpan.FromSeconds(30) ? recovery : TimeSpan.FromSeconds(30),
        MaxPollingInterval = TimeSpan.FromSeconds(1),
    };

    public Task CreateIfNotExistsAsync() => _service.CreateIfNotExistsAsync();

    /// <summary>The run's instance id: <c>fleet-</c> and 32 hex of the SHA-256 of the case directory's full path.</summary>
    public static string InstanceId(string caseDirectory)
        => "fleet-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Path.GetFullPath(caseDirectory))))[..32];

    /// <summary>Starts the run; false when a run of the same case is pending or running already (then it is attached to).</summary>
    public async Task<bool> StartAsync(string instanceId, FleetJob job)
    {
        try
        {
            await _client.CreateOrchestrationInstanceAsync(OrchestrationName, "", instanceId, JsonSerializer.Serialize(job, FleetCaseStore.Json), null,
                [OrchestrationStatus.Pending, OrchestrationStatus.Running]).ConfigureAwait(false);
            return true;
        }
        catch (OrchestrationAlreadyExistsException)
        {
            return false;
        }
    }

    public async Task<OrchestrationState?> GetStateAsync(string instanceId) => await _client.GetOrchestrationStateAsync(instanceId).ConfigureAwait(false);

    /// <summary>The outcomes of a completed run (its output), in capture order.</summary>
    public static IReadOnlyList<FleetOutcome> Outcomes(OrchestrationState state)
    {
        string json = JsonSerializer.Deserialize<string>(state.Output)!;
        return JsonSerializer.Deserialize<List<FleetOutcome>>(json, FleetCaseStore.Json)!;
    }

    /// <summary>
    /// Runs a worker: the orchestration and the activity, whose analysis is <paramref name="analyse"/>, until
    /// <paramref name="cancellationToken"/> is cancelled.
    /// </summary>
    public async Task RunWorkerAsync(Func<FleetWorkItem, FleetOutcome> analyse, Action<string> log, CancellationToken cancellationToken)
    {
        await _service.CreateIfNotExistsAsync().ConfigureAwait(false);
        var worker = new TaskHubWorker(_service) { ErrorPropagationMode = ErrorPropagationMode.UseFailureDetails };
        worker.AddTaskOrchestrations(new NameValueObjectCreator<TaskOrchestration>(OrchestrationName, "", typeof(FleetOrchestration)));
        worker.AddTaskActivities(new NameValueObjectCreator<TaskActivity>(ActivityName, "", new CaptureActivity(analyse)));
        await worker.StartAsync().ConfigureAwait(false);
        log($"fleet worker running on task hub {TaskHub}");
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
        }
        finally
        {
            await worker.StopAsync(true).ConfigureAwait(false);
            log("fleet worker stopped");
        }
    }

    /// <summary>
    /// Fan-out of one activity per capture, fan-in of their outcomes (in capture order). An activity that throws (not an
    /// analysis that fails: that is a Failed outcome) is retried twice, then recorded as failed with its message.
    /// Deterministic: only activity results decide the output.
    /// </summary>
    private sealed class FleetOrchestration : TaskOrchestration<string, string>
    {
        public override async Task<string> RunTask(OrchestrationContext context, string input)
        {
            FleetJob job = JsonSerializer.Deserialize<FleetJob>(input, FleetCaseStore.Json)!;
            var retry = new RetryOptions(TimeSpan.FromSeconds(5), 3) { BackoffCoefficient = 2 };
            Task<FleetOutcome>[] tasks = job.Captures.Select(c => Run(context, retry, job, c)).ToArray();
            FleetOutcome[] outcomes = await Task.WhenAll(tasks).ConfigureAwait(true);
            return JsonSerializer.Serialize(outcomes, FleetCaseStore.Json);
        }

        private static async Task<FleetOutcome> Run(OrchestrationContext context, RetryOptions retry, FleetJob job, FleetCapture capture)
        {
            string item = JsonSerializer.Serialize(new FleetWorkItem(job.Case, capture.Id, capture.Address, job.Options), FleetCaseStore.Json);
            try
            {
                string result = await context.ScheduleWithRetry<string>(ActivityName, "", retry, item).ConfigureAwait(true);
                return JsonSerializer.Deserialize<FleetOutcome>(result, FleetCaseStore.Json)!;
            }
            catch (TaskFailedException e)
            {
                string cause = e.FailureDetails?.ErrorMessage ?? e.InnerException?.Message ?? e.Message;
                return new FleetOutcome { Id = capture.Id, Capture = capture.Address, Status = "failed", Error = "worker: " + cause.ReplaceLineEndings(" ") };
            }
        }
    }

    /// <summary>The activity: one capture, analysed in this worker process (synchronously: one at a time per worker).</summary>
    private sealed class CaptureActivity(Func<FleetWorkItem, FleetOutcome> analyse) : AsyncTaskActivity<string, string>
    {
        protected override async Task<string> ExecuteAsync(TaskContext context, string input)
        {
            FleetWorkItem item = JsonSerializer.Deserialize<FleetWorkItem>(input, FleetCaseStore.Json)!;
            // Off the dispatcher's thread: the lock renewal of this work item keeps running while the analysis does.
            FleetOutcome outcome = await Task.Run(() => analyse(item)).ConfigureAwait(false);
            return JsonSerializer.Serialize(outcome, FleetCaseStore.Json);
        }
    }
}
