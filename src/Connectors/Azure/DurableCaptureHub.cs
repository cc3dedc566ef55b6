using System.Text.Json;
using System.Text.Json.Nodes;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;
using DurableTask.AzureStorage;
using DurableTask.Core;
using DurableTask.Core.Exceptions;

namespace CloudMem.Connectors.Azure;

/// <summary>Timings of the Durable Task hub (defaults suit production; tests shorten them so a killed worker's work returns quickly).</summary>
public sealed record DurableHubTimings
{
    /// <summary>How long a dequeued activity stays invisible to other workers (a killed worker's activity is re-run after it). Default 5 minutes.</summary>
    public TimeSpan WorkItemVisibility { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>How long a dequeued orchestration message stays invisible. Default 5 minutes.</summary>
    public TimeSpan ControlVisibility { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Partition lease length (a killed worker's partitions are taken over after it). Default 30 s.</summary>
    public TimeSpan Lease { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Longest wait between two queue polls when idle. Default 10 s.</summary>
    public TimeSpan MaxPollingInterval { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>The Azure Storage task-hub settings with these timings (one partition, leases renewed at a third of
    /// their length, no app lease): what every CloudMem hub (capture, fleet) runs on.</summary>
    internal AzureStorageOrchestrationServiceSettings ServiceSettings(string connectionString, string taskHub) => new()
    {
        StorageAccountClientProvider = new StorageAccountClientProvider(connectionString),
        TaskHubName = taskHub,
        PartitionCount = 1,
        WorkItemQueueVisibilityTimeout = WorkItemVisibility,
        ControlQueueVisibilityTimeout = ControlVisibility,
        LeaseInterval = Lease,
        LeaseRenewInterval = Lease / 3,
        LeaseAcquireInterval = Lease / 3,
        MaxQueuePollingInterval = MaxPollingInterval,
        UseAppLease = false,
    };
}

/// <summary>How <see cref="DurableCaptureHub.StartAsync"/> answered.</summary>
public enum DurableStartStatus
{
    /// <summary>The orchestration was created.</summary>
    Started,
    /// <summary>An orchestration with this alert's instance id exists already (a re-delivery): nothing started.</summary>
    Duplicate,
    /// <summary>The policy refused the alert.</summary>
    Refused,
}

/// <summary>What <see cref="DurableCaptureHub.StartAsync"/> did: status, instance id, one-line reason.</summary>
public sealed record DurableStart(DurableStartStatus Status, string? InstanceId, string Reason);

/// <summary>
/// The Azure durable capture on the Durable Task Framework with its Azure Storage backend (queues, tables and blobs in
/// one storage account; azurite in the tests). The Function (or <c>cloudmem respond --durable</c>) only validates
/// the Defender alert and starts the orchestration with an instance id derived from the alert id and the VM
/// (<see cref="InstanceId"/>; Event Grid delivers at least once, and a second start with the same id is refused
/// whatever the first one's state), answering at once; a long-running worker (<see cref="RunWorkerAsync"/>, <c>cloudmem
/// durable-worker</c>) runs the orchestration, whose activities are <see cref="AzureWorkflowSteps"/>' steps: start,
/// disk snapshots, poll (a durable timer between polls), verify, finalize, or fail on any step's final failure. The claim in
/// <see cref="TableCaptureLedger"/> (owner = instance id) is the second guard: another orchestration for the same alert
/// or VM never runs the tool.
/// </summary>
/// <remarks>Not thread-safe for concurrent <see cref="RunWorkerAsync"/> calls; starting and querying are.</remarks>
public sealed class DurableCaptureHub
{
    private readonly AzureStorageOrchestrationService _service;
    private readonly TaskHubClient _client;
    private readonly CaptureLog _log;

    /// <summary>Connects to task hub <paramref name="taskHub"/> in the storage account of <paramref name="connectionString"/>.</summary>
    public DurableCaptureHub(string connectionString, string taskHub, CaptureLog log, DurableHubTimings? timings = null)
    {
        log.Scrubber.Register(connectionString);
        timings ??= new DurableHubTimings();
        _log = log;
        TaskHub = taskHub;
        _service = new AzureStorageOrchestrationService(timings.ServiceSettings(connectionString, taskHub));
        _client = new TaskHubClient(_service);
    }

    /// <summary>The task hub's name.</summary>
    public string TaskHub { get; }

    /// <summary>Creates the hub's queues, tables and containers when absent.</summary>
    public Task CreateIfNotExistsAsync() => _service.CreateIfNotExistsAsync();

    /// <summary>The orchestration instance id of an alert on its VM: <c>cloudmem-</c> and 40 hex of the SHA-256 of source, alert id and target.</summary>
    public static string InstanceId(AlertEvent alert) => "cloudmem-" + TableCaptureLedger.RowKey(TableCaptureLedger.AlertKey(alert))[..40];

    /// <summary>
    /// Parses the event, applies <paramref name="policy"/> and starts the capture orchestration (poll interval
    /// <paramref name="pollInterval"/>), unless one with the alert's instance id exists (in any state). Concurrent
    /// deliveries are decided first by a start marker in <paramref name="ledger"/> (an ETag-conditional insert: the
    /// Azure Storage backend's own de-duplication reads then writes, and two simultaneous creates both succeed there).
    /// </summary>
    /// <exception cref="TriggerEventException">the event is malformed.</exception>
    public async Task<DurableStart> StartAsync(ReadOnlyMemory<byte> eventJson, TriggerPolicy policy, TimeSpan pollInterval, TableCaptureLedger ledger, CancellationToken cancellationToken)
    {
        AlertEvent alert = AlertEventParser.Parse(eventJson.Span);
        TriggerDecision decision = policy.Evaluate(alert);
        if (!decision.Accepted)
        {
            return new DurableStart(DurableStartStatus.Refused, null, decision.Reason);
        }
        if (alert.Source != AlertSource.Defender)
        {
            throw new CaptureException($"{alert.Trigger}: the Azure durable workflow takes Defender alerts only");
        }
        string instanceId = InstanceId(alert);
        var input = new JsonObject
        {
            ["event"] = JsonNode.Parse(eventJson.Span),
            ["pollSeconds"] = Math.Max(1, (int)pollInterval.TotalSeconds),
        };
        OrchestrationStatus[] dedupe = Enum.GetValues<OrchestrationStatus>();
        if (!await ledger.TryMarkStartAsync(instanceId, StartHold, cancellationToken).ConfigureAwait(false))
        {
            string reason = $"{decision.Reason}; duplicate delivery: orchestration {instanceId} is being started by another delivery, nothing started";
            _log.Info(reason);
            return new DurableStart(DurableStartStatus.Duplicate, instanceId, reason);
        }
        try
        {
            await _client.CreateOrchestrationInstanceAsync(CaptureOrchestration.Name, "", instanceId, input.ToJsonString(), null, dedupe).ConfigureAwait(false);
        }
        catch (OrchestrationAlreadyExistsException)
        {
            string reason = $"{decision.Reason}; duplicate delivery: orchestration {instanceId} exists already, nothing started";
            _log.Info(reason);
            return new DurableStart(DurableStartStatus.Duplicate, instanceId, reason);
        }
        _log.Info($"{decision.Reason}; orchestration {instanceId} started in task hub {TaskHub}");
        return new DurableStart(DurableStartStatus.Started, instanceId, $"{decision.Reason}; orchestration {instanceId} started");
    }

    /// <summary>
    /// <see cref="StartAsync"/> as the Function's answer (the custom handler's <c>ResponseOutcome</c>): Started, Duplicate
    /// or Refused, with the alert's trigger, case id and VM; the capture itself runs in the worker.
    /// </summary>
    public async Task<ResponseOutcome> RespondAsync(ReadOnlyMemory<byte> eventJson, TriggerPolicy policy, TimeSpan pollInterval, TableCaptureLedger ledger, CancellationToken cancellationToken)
    {
        AlertEvent alert = AlertEventParser.Parse(eventJson.Span);
        DurableStart start = await StartAsync(eventJson, policy, pollInterval, ledger, cancellationToken).ConfigureAwait(false);
        return new ResponseOutcome
        {
            Status = start.Status switch
            {
                DurableStartStatus.Started => ResponseStatus.Started,
                DurableStartStatus.Duplicate => ResponseStatus.Duplicate,
                _ => ResponseStatus.Refused,
            },
            Reason = start.Reason,
            Provider = "azure",
            Trigger = alert.Trigger.ToString(),
            CaseId = alert.CaseId,
            Target = alert.Target,
        };
    }

    /// <summary>How long a start marker keeps other deliveries out before the orchestration exists (then the backend's own check does).</summary>
    public static TimeSpan StartHold { get; } = TimeSpan.FromMinutes(2);

    /// <summary>The orchestration's state (null when unknown).</summary>
    public async Task<OrchestrationState?> GetStateAsync(string instanceId)
        => await _client.GetOrchestrationStateAsync(instanceId).ConfigureAwait(false);

    /// <summary>Waits for the orchestration to finish (null after <paramref name="timeout"/>).</summary>
    public async Task<OrchestrationState?> WaitAsync(string instanceId, TimeSpan timeout, CancellationToken cancellationToken)
        => await _client.WaitForOrchestrationAsync(new OrchestrationInstance { InstanceId = instanceId }, timeout, cancellationToken).ConfigureAwait(false);

    /// <summary>Runs the worker (orchestration and activities) until <paramref name="cancellationToken"/> is cancelled.</summary>
    public async Task RunWorkerAsync(AzureWorkflowSteps steps, CancellationToken cancellationToken)
    {
        await _service.CreateIfNotExistsAsync().ConfigureAwait(false);
        var worker = new TaskHubWorker(_service) { ErrorPropagationMode = ErrorPropagationMode.UseFailureDetails };
        worker.AddTaskOrchestrations(new NameValueObjectCreator<TaskOrchestration>(CaptureOrchestration.Name, "", typeof(CaptureOrchestration)));
        worker.AddTaskActivities(new NameValueObjectCreator<TaskActivity>(CaptureStepActivity.Name, "", new CaptureStepActivity(steps)));
        await worker.StartAsync().ConfigureAwait(false);
        _log.Info($"durable worker running on task hub {TaskHub}");
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
            _log.Info("durable worker stopped");
        }
    }

    /// <summary>
    /// The orchestration: start, disk snapshots (a failure there is recorded and the capture goes on), poll until done (a durable timer between polls, so no worker waits), verify, finalize;
    /// any step that fails after its retries sends the orchestration to the fail step, which writes and uploads the Failed
    /// manifest. Deterministic: only activity results and durable timers decide the flow.
    /// </summary>
    private sealed class CaptureOrchestration : TaskOrchestration<string, string>
    {
        public const string Name = "CloudMemDefenderCapture";

        public override async Task<string> RunTask(OrchestrationContext context, string input)
        {
            JsonNode root = JsonNode.Parse(input)!;
            JsonNode alert = root["event"]!;
            int pollSeconds = root["pollSeconds"]?.GetValue<int>() ?? 30;
            string execution = context.OrchestrationInstance.InstanceId;
            var retry = new RetryOptions(TimeSpan.FromSeconds(5), 3) { BackoffCoefficient = 2 };
            string Step(string step, JsonNode? error = null) => new JsonObject
            {
                ["step"] = step,
                ["event"] = alert.DeepClone(),
                ["execution"] = execution,
                ["error"] = error,
            }.ToJsonString();
            async Task<JsonNode> Run(string step, JsonNode? error = null)
                => JsonNode.Parse(await context.ScheduleWithRetry<string>(CaptureStepActivity.Name, "", retry, Step(step, error)).ConfigureAwait(true))!;

            try
            {
                JsonNode started = await Run("start").ConfigureAwait(true);
                if (started["done"]?.GetValue<bool>() == true)
                {
                    return started.ToJsonString();
                }
                try
                {
                    await Run("snapshots").ConfigureAwait(true);
                }
                catch (TaskFailedException)
                {
                    // Disk evidence is recorded as failed in the manifest by the step itself; the memory capture goes on.
                }
                while (true)
                {
                    JsonNode poll = await Run("poll").ConfigureAwait(true);
                    if (poll["done"]?.GetValue<bool>() == true)
                    {
                        break;
                    }
                    await context.CreateTimer(context.CurrentUtcDateTime.AddSeconds(pollSeconds), true).ConfigureAwait(true);
                }
                await Run("verify").ConfigureAwait(true);
                return (await Run("finalize").ConfigureAwait(true)).ToJsonString();
            }
            catch (TaskFailedException e)
            {
                string cause = e.FailureDetails?.ErrorMessage ?? e.InnerException?.Message ?? e.Message;
                JsonNode failed = await Run("fail", new JsonObject { ["Error"] = e.FailureDetails?.ErrorType ?? "TaskFailed", ["Cause"] = cause }).ConfigureAwait(true);
                return failed.ToJsonString();
            }
        }
    }

    /// <summary>One activity for every step: the step name travels in the input.</summary>
    private sealed class CaptureStepActivity(AzureWorkflowSteps steps) : AsyncTaskActivity<string, string>
    {
        public const string Name = "CloudMemCaptureStep";

        protected override async Task<string> ExecuteAsync(TaskContext context, string input)
        {
            WorkflowInput step = WorkflowInput.TryParse(System.Text.Encoding.UTF8.GetBytes(input)) ?? throw new CaptureException("activity input is not a workflow step");
            WorkflowResult result = await steps.RunAsync(step, CancellationToken.None).ConfigureAwait(false);
            return result.ToJson();
        }
    }
}
