using System.Text.Json;
using System.Text.Json.Serialization;
using Amazon.DynamoDBv2.Model;
using Amazon.SimpleSystemsManagement.Model;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;

namespace CloudMem.Connectors.Aws;

/// <summary>
/// One task of the Step Functions workflow (infra/aws/cloudmem-workflow.asl.json), as <c>cloudmem lambda</c> receives
/// it: the step, the GuardDuty event the execution started with, the execution id (the claim's owner) and, for the
/// failure step, the error Step Functions caught.
/// </summary>
public sealed record WorkflowInput
{
    /// <summary>start, poll, finalize or fail.</summary>
    public required string Step { get; init; }

    /// <summary>The EventBridge event (or raw finding).</summary>
    public required JsonElement Event { get; init; }

    /// <summary>The execution id ($$.Execution.Id): owner of the claim, so a restarted step resumes.</summary>
    public required string Execution { get; init; }

    /// <summary>For "fail": what Step Functions caught ({"Error","Cause"}).</summary>
    public JsonElement? Error { get; init; }

    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web);

    /// <summary>A workflow step payload ({"step": ..., "event": ..., "execution": ...}), or null for anything else (a plain event).</summary>
    public static WorkflowInput? TryParse(ReadOnlySpan<byte> utf8)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(utf8.ToArray(), new JsonDocumentOptions { MaxDepth = TriggerLimits.MaxDepth });
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("step", out JsonElement step) || step.ValueKind != JsonValueKind.String
                || !root.TryGetProperty("event", out _))
            {
                return null;
            }
            WorkflowInput input = root.Deserialize<WorkflowInput>(s_json) ?? throw new TriggerEventException("$", "empty workflow input");
            return input with { Event = input.Event.Clone(), Error = input.Error?.Clone() };
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

/// <summary>What a step returns to the state machine (camelCase JSON): <c>done</c> drives the poll loop's Choice.</summary>
public sealed record WorkflowResult
{
    /// <summary>Refused, Duplicate, Started, Snapshotted, Skipped, Running, Ready, Verifying, Captured, Failed.</summary>
    public required string Status { get; init; }

    /// <summary>
    /// True when the execution has nothing more to do (refused, duplicate, captured, failed), or, after poll, when the
    /// command ended. False after a finalize that stopped at a checkpoint (Verifying): the state machine runs it again.
    /// </summary>
    public bool Done { get; init; }

    /// <summary>One line.</summary>
    public required string Reason { get; init; }

    /// <summary>Command id, once sent.</summary>
    public string? CommandId { get; init; }

    /// <summary>Multipart upload id, once started.</summary>
    public string? UploadId { get; init; }

    /// <summary>Manifest (local path in the step's sandbox; the copy is beside the evidence in S3).</summary>
    public string? Manifest { get; init; }

    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    /// <summary>camelCase JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, s_json);
}

/// <summary>
/// The durable AWS capture as short steps, each well under Lambda's 15 minutes: <c>start</c> (claim the finding on the
/// instance with the execution as owner, preflight, stage the tool, CreateMultipartUpload, ticket, SendCommand),
/// <c>poll</c> (one GetCommandInvocation; the state machine waits between polls), <c>finalize</c> (guest report,
/// CompleteMultipartUpload, read back and hash by byte range, open in place, manifest beside the evidence, release;
/// a read-back that would outlast the step's budget saves its hash state and returns Verifying, and the state machine
/// runs finalize again until Captured) and <c>fail</c> (clean up,
/// Failed manifest beside the evidence, release). The capture's state (upload id, command id, ...) and the manifest so
/// far live in the claim's DynamoDB item, saved as soon as each resource exists, so a step that is restarted (timed out,
/// killed, retried by the state machine) resumes: it never sends the command twice nor starts a second upload, and the
/// manifest records every attempt.
/// </summary>
public sealed class AwsWorkflowSteps : WorkflowStepSettings
{
    private const string StateAttribute = "workflow";
    private const string CustodyAttribute = "custody";
    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web);
    private readonly Func<string?, AwsConnection> _connection;
    private readonly DynamoCaptureLedger _ledger;
    private readonly string _bucket;
    private readonly string _prefix;
    private readonly string? _toolFile;
    private readonly S3EvidenceOpener _opener;
    private readonly CaptureLog _log;

    /// <summary>Creates the steps.</summary>
    public AwsWorkflowSteps(TriggerPolicy policy, Func<string?, AwsConnection> connection, DynamoCaptureLedger ledger, string bucket, string prefix, string? toolFile, S3EvidenceOpener opener, CaptureLog log)
        : base(policy)
    {
        _connection = connection;
        _ledger = ledger;
        _bucket = bucket;
        _prefix = prefix;
        _toolFile = toolFile;
        _opener = opener;
        _log = log;
    }

    /// <summary>Minimum part size (tests use small parts).</summary>
    public long? MinPartBytes { get; init; }

    /// <summary>The SSM documents SendCommand runs (the stack's pinned copies in production).</summary>
    public SsmDocuments Documents { get; init; } = SsmDocuments.AwsOwned;

    /// <summary>Take EBS snapshots of every attached volume in the "snapshots" step (CLOUDMEM_DISK_SNAPSHOTS=false opts out).</summary>
    public bool DiskSnapshots { get; init; } = true;

    /// <summary>Account the disk snapshots are shared with at finalize (CLOUDMEM_FORENSIC_ACCOUNT); null: not shared.</summary>
    public string? ForensicAccount { get; init; }

    /// <summary>
    /// The longest one step may run (Lambda: the function's timeout; the invocation's deadline, when given to
    /// <see cref="RunAsync"/>, counts too). Null: no limit (the container). Finalize's read-back stops
    /// <see cref="CheckpointMargin"/> before it, saves where it is and returns Verifying.
    /// </summary>
    public TimeSpan? StepBudget { get; init; }

    /// <summary>
    /// What finalize keeps of the budget for the work after the read-back's checkpoint: saving the state, the open in
    /// place and the manifest. Default 2 minutes.
    /// </summary>
    public TimeSpan CheckpointMargin { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Test seam handed to the connector (runs just before CompleteMultipartUpload).</summary>
    internal Func<CancellationToken, Task>? BeforeComplete { get; init; }

    /// <summary>Test seam handed to the connector (runs after each read-back piece with the bytes hashed so far).</summary>
    internal Func<long, CancellationToken, Task>? AfterReadBackPiece { get; init; }

    /// <summary>How often finalize's read-back saves its place (tests: every piece).</summary>
    internal TimeSpan ReadBackSaveEvery { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Runs one step; <paramref name="deadline"/> is when the runtime stops it (Lambda's invocation deadline).</summary>
    /// <exception cref="CaptureException">the step failed (the state machine retries or takes the failure path).</exception>
    public async Task<WorkflowResult> RunAsync(WorkflowInput input, CancellationToken cancellationToken, DateTimeOffset? deadline = null)
    {
        DateTimeOffset began = DateTimeOffset.UtcNow;
        DateTimeOffset end = StepBudget is { } budget ? began + budget : DateTimeOffset.MaxValue;
        if (deadline is { } at && at < end)
        {
            end = at;
        }
        DateTimeOffset checkpointBy = end == DateTimeOffset.MaxValue ? end : end - CheckpointMargin;
        (AlertEvent alert, TriggerDecision decision, WorkflowResult? refused) = WorkflowStepKit.Accept(input, Policy, AlertSource.GuardDuty, "AWS");
        if (refused is not null)
        {
            return refused;
        }
        LedgerClaim claim = await _ledger.ClaimAsync(alert, Timeouts.Command + LockMargin, input.Execution, cancellationToken).ConfigureAwait(false);
        if (!claim.Won)
        {
            return new WorkflowResult { Status = "Duplicate", Done = true, Reason = $"{decision.Reason}; {claim.Reason}" };
        }
        Dictionary<string, AttributeValue> item = await _ledger.GetAsync(claim.AlertKey, cancellationToken).ConfigureAwait(false);
        SsmCaptureState? state = item.TryGetValue(StateAttribute, out AttributeValue? saved) && saved.S is { } stateJson
            ? JsonSerializer.Deserialize<SsmCaptureState>(stateJson, s_json) : null;
        Dictionary<string, int> attempts = WorkflowStepKit.Attempts(item.TryGetValue("attempts", out AttributeValue? counted) ? counted.S : null);
        string step = input.Step.ToLowerInvariant();
        int attempt = WorkflowStepKit.CountAttempt(attempts, step);
        CaptureRequest request = WorkflowStepKit.Request(alert, OutputDirectory, Timeouts, Signer);
        CustodyRecorder recorder = WorkflowStepKit.Recorder(item.TryGetValue(CustodyAttribute, out AttributeValue? custody) ? custody.S : null, request, _log, "aws", alert.Target!, "ssm");
        if (step != "poll" || attempt == 1)
        {
            recorder.Step("workflow", $"{step} attempt {attempt} ({input.Execution}){(claim.Resumed && step == "start" && attempt > 1 ? ": resumed from the saved state" : "")}");
        }
        var calls = new AwsCalls(recorder);
        using AwsClients clients = AwsClients.Create(_connection(alert.Region));
        var options = new AwsCaptureOptions { InstanceId = alert.Target!, Bucket = _bucket, Prefix = _prefix, ToolFile = _toolFile, Documents = Documents };
        if (MinPartBytes is { } part)
        {
            options = options with { MinPartBytes = part };
        }
        var connector = new AwsCaptureConnector(clients, options, request, _log, NoLocalCopy) { BeforeComplete = BeforeComplete, AfterReadBackPiece = AfterReadBackPiece, ReadBackSaveEvery = ReadBackSaveEvery };

        async Task Save(SsmCaptureState current, CancellationToken token)
        {
            state = current;
            await _ledger.SaveAsync(claim, new Dictionary<string, string>
            {
                [StateAttribute] = JsonSerializer.Serialize(current, s_json),
                [CustodyAttribute] = recorder.Build().ToJson(),
                ["attempts"] = WorkflowStepKit.Attempts(attempts),
            }, token).ConfigureAwait(false);
        }

        try
        {
            WorkflowResult result = step switch
            {
                "start" => await StartAsync(connector, clients, calls, recorder, options, state, Save, cancellationToken).ConfigureAwait(false),
                "snapshots" => await SnapshotsAsync(clients, calls, recorder, options, alert, state ?? throw NoState(step), Save, cancellationToken).ConfigureAwait(false),
                "poll" => await PollAsync(connector, calls, recorder, options, state ?? throw NoState(step), cancellationToken).ConfigureAwait(false),
                "finalize" => await FinalizeAsync(connector, calls, recorder, claim, options, state ?? throw NoState(step), checkpointBy, Save, cancellationToken).ConfigureAwait(false),
                "fail" => await FailAsync(connector, calls, recorder, claim, input, state, cancellationToken).ConfigureAwait(false),
                _ => throw new TriggerEventException("$.step", $"'{input.Step}' is not start, snapshots, poll, finalize or fail"),
            };
            if (state is not null && result.Status is not ("Captured" or "Failed"))
            {
                await Save(state, cancellationToken).ConfigureAwait(false);
            }
            return result with { CommandId = state?.CommandId, UploadId = state?.UploadId };
        }
        catch (Exception e) when (step != "fail" && state is not null)
        {
            await WorkflowStepKit.RecordStoppedAsync(recorder, step, attempt, e, token => Save(state, token), _log).ConfigureAwait(false);
            throw;
        }
    }

    // The workflow keeps no local copy (finalize opens the object in place with the S3 opener): nothing to open here.
    private static readonly EvidenceOpener NoLocalCopy = path => throw new InvalidOperationException($"the AWS workflow opens its evidence in place, not {path}");

    private static CaptureException NoState(string step) => new($"workflow step {step}: no saved capture state (the start step did not run for this execution)");

    private async Task<WorkflowResult> StartAsync(AwsCaptureConnector connector, AwsClients clients, AwsCalls calls, CustodyRecorder recorder, AwsCaptureOptions options, SsmCaptureState? state, Func<SsmCaptureState, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        if (state?.CommandId is not null)
        {
            await connector.StartSsmAsync(recorder, calls, new AwsFacts(), state, save, cancellationToken).ConfigureAwait(false);
            return new WorkflowResult { Status = "Started", Reason = $"command {state.CommandId} already sent; polling" };
        }
        var plan = new CapturePlan("aws", options.InstanceId, "ssm");
        var facts = new AwsFacts();
        await AwsPreflight.GatherCaptureFactsAsync(clients, calls, options, plan, facts, cancellationToken).ConfigureAwait(false);
        if (facts.CallerArn is not null)
        {
            recorder.Operator(facts.CallerArn, "sts:GetCallerIdentity");
        }
        recorder.Preflight(plan);
        state ??= new SsmCaptureState { Layout = connector.PlanLayout(facts, recorder.Build().StartedUtc) };
        await connector.StartSsmAsync(recorder, calls, facts, state, save, cancellationToken).ConfigureAwait(false);
        return new WorkflowResult { Status = "Started", Reason = $"command {state.CommandId} sent to {options.InstanceId}, upload {state.UploadId}" };
    }

    private async Task<WorkflowResult> SnapshotsAsync(AwsClients clients, AwsCalls calls, CustodyRecorder recorder, AwsCaptureOptions options, AlertEvent alert, SsmCaptureState state, Func<SsmCaptureState, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        if (!DiskSnapshots)
        {
            recorder.Step("disk snapshots", "skipped (CLOUDMEM_DISK_SNAPSHOTS=false)");
            return new WorkflowResult { Status = "Skipped", Reason = "disk snapshots are turned off" };
        }
        await AwsDiskSnapshots.SnapshotVolumesAsync(clients, calls, recorder, options.InstanceId, recorder.Build().CaseId, alert.Id, state.DiskSnapshots, token => save(state, token), cancellationToken).ConfigureAwait(false);
        return new WorkflowResult { Status = "Snapshotted", Reason = $"{state.DiskSnapshots.Count} EBS snapshot(s) of {options.InstanceId}" };
    }

    private async Task<WorkflowResult> PollAsync(AwsCaptureConnector connector, AwsCalls calls, CustodyRecorder recorder, AwsCaptureOptions options, SsmCaptureState state, CancellationToken cancellationToken)
    {
        (string status, _) = await connector.CommandStatusAsync(calls, state.CommandId!, cancellationToken).ConfigureAwait(false);
        bool running = AwsCaptureConnector.IsRunning(status);
        if (running && state.CommandSentUtc is { } sent && DateTimeOffset.UtcNow - sent > Timeouts.Command)
        {
            await connector.CancelCommandAsync(calls, recorder, state.CommandId!).ConfigureAwait(false);
            throw new CaptureTimeoutException($"SSM command {state.CommandId} on {options.InstanceId}", Timeouts.Command, status);
        }
        return new WorkflowResult { Status = running ? "Running" : "Ready", Done = !running, Reason = $"command {state.CommandId}: {status}" };
    }

    private async Task<WorkflowResult> FinalizeAsync(AwsCaptureConnector connector, AwsCalls calls, CustodyRecorder recorder, LedgerClaim claim, AwsCaptureOptions options, SsmCaptureState state, DateTimeOffset checkpointBy, Func<SsmCaptureState, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        (string status, GetCommandInvocationResponse? invocation) = await connector.CommandStatusAsync(calls, state.CommandId!, cancellationToken).ConfigureAwait(false);
        if (invocation is null || AwsCaptureConnector.IsRunning(status))
        {
            throw new CaptureException($"SSM command {state.CommandId} on {options.InstanceId} has not finished ({status}): finalize runs after poll says done");
        }
        if (state.ReadBack is null)
        {
            connector.Succeeded(recorder, state.CommandId!, invocation);
        }
        if (!await connector.FinishSsmInStepsAsync(recorder, calls, state, invocation, _opener, checkpointBy, save, cancellationToken).ConfigureAwait(false))
        {
            ReadBackState back = state.ReadBack!;
            return new WorkflowResult { Status = "Verifying", Reason = $"{options.InstanceId}: {back.Offset} of {back.Length} bytes read back and hashed; finalize goes on from there" };
        }
        if (ForensicAccount is not null)
        {
            await AwsDiskSnapshots.ShareAsync(connector.Clients, calls, recorder, state.DiskSnapshots, ForensicAccount, cancellationToken).ConfigureAwait(false);
        }
        await connector.CleanUpAsync(recorder, calls, state).ConfigureAwait(false);
        recorder.Complete();
        string manifest = await connector.WriteManifestAsync(recorder, calls, state.Layout, cancellationToken).ConfigureAwait(false);
        await _ledger.SaveAsync(claim, new Dictionary<string, string>
        {
            [StateAttribute] = JsonSerializer.Serialize(state, s_json),
            [CustodyAttribute] = recorder.Build().ToJson(),
        }, cancellationToken).ConfigureAwait(false);
        await _ledger.ReleaseAsync(claim, new LedgerOutcome("Captured", "Completed", manifest), cancellationToken).ConfigureAwait(false);
        return new WorkflowResult { Status = "Captured", Done = true, Reason = $"{options.InstanceId}: Completed", Manifest = manifest };
    }

    private async Task<WorkflowResult> FailAsync(AwsCaptureConnector connector, AwsCalls calls, CustodyRecorder recorder, LedgerClaim claim, WorkflowInput input, SsmCaptureState? state, CancellationToken cancellationToken)
    {
        string cause = WorkflowStepKit.FailureCause(input);
        if (state is not null)
        {
            await connector.CleanUpAsync(recorder, calls, state).ConfigureAwait(false);
        }
        recorder.Fail(new CaptureException(cause));
        string manifest = state is null
            ? recorder.Write()
            : await connector.WriteManifestAsync(recorder, calls, state.Layout, cancellationToken).ConfigureAwait(false);
        await _ledger.SaveAsync(claim, new Dictionary<string, string> { [CustodyAttribute] = recorder.Build().ToJson() }, cancellationToken).ConfigureAwait(false);
        await _ledger.ReleaseAsync(claim, new LedgerOutcome("Failed", CaptureException.OneLine(cause), manifest), cancellationToken).ConfigureAwait(false);
        return new WorkflowResult { Status = "Failed", Done = true, Reason = CaptureException.OneLine(cause), Manifest = manifest };
    }
}
