using System.Text.Json;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;

namespace CloudMem.Connectors.Azure;

/// <summary>
/// The durable Azure capture as short, resumable steps (the activities of <see cref="DurableCaptureHub"/>'s
/// orchestration; the Azure twin of <see cref="AwsWorkflowSteps"/>, with the same <see cref="WorkflowInput"/> and
/// <see cref="WorkflowResult"/>): <c>start</c> (claim the Defender alert on the VM with the orchestration instance as
/// owner, preflight, stage the tool, SAS, Run Command), <c>snapshots</c> (incremental snapshots of the VM's managed
/// disks, optionally copied to a forensic subscription: <see cref="AzureDiskSnapshots"/>), <c>poll</c> (one read of the saved operation), <c>verify</c>
/// (guest report, read back with our SHA-256, open with our parsers), <c>finalize</c> (Completed manifest beside the
/// evidence, release: the notification is the claim's final state) and <c>fail</c> (Failed manifest beside the
/// evidence, release). The Run Command state and the manifest so far live in the claim's table entity
/// (<see cref="TableCaptureLedger"/>), saved before and after Run Command is sent, so a step re-run after the worker
/// died never sends the command twice, and the manifest records every attempt.
/// </summary>
public sealed class AzureWorkflowSteps : WorkflowStepSettings
{
    private const string StateAttribute = "workflow";
    private const string CustodyAttribute = "custody";
    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web);
    private readonly AzureResponderTarget _target;
    private readonly TableCaptureLedger _ledger;
    private readonly CaptureLog _log;

    /// <summary>Creates the steps over the responder's Azure target (the connector is built per step).</summary>
    public AzureWorkflowSteps(TriggerPolicy policy, AzureResponderTarget target, TableCaptureLedger ledger, CaptureLog log)
        : base(policy)
    {
        _target = target;
        _ledger = ledger;
        _log = log;
    }

    /// <summary>Snapshot the VM's managed disks in the "snapshots" step (CLOUDMEM_DISK_SNAPSHOTS=false opts out).</summary>
    public bool DiskSnapshots { get; init; } = true;

    /// <summary>Where the disk snapshots are copied at once (CLOUDMEM_FORENSIC_SUBSCRIPTION, _RESOURCE_GROUP, _LOCATION); null: not copied.</summary>
    public AzureForensicTarget? ForensicTarget { get; init; }

    /// <summary>Test seam: runs after a snapshot's PUT was accepted, before its id is saved (a test fails the step there).</summary>
    internal Func<string, CancellationToken, Task>? AfterSnapshotCreate { get; init; }

    /// <summary>Test seam: runs inside <c>verify</c> after the state is loaded (a test kills the worker there).</summary>
    internal Func<string, CancellationToken, Task>? BeforeStep { get; init; }

    /// <summary>Runs one step.</summary>
    /// <exception cref="CaptureException">the step failed (the orchestration retries it or takes the failure path).</exception>
    public async Task<WorkflowResult> RunAsync(WorkflowInput input, CancellationToken cancellationToken)
    {
        (AlertEvent alert, TriggerDecision decision, WorkflowResult? refused) = WorkflowStepKit.Accept(input, Policy, AlertSource.Defender, "Azure");
        if (refused is not null)
        {
            return refused;
        }
        LedgerClaim claim = await _ledger.ClaimAsync(alert, Timeouts.Command + LockMargin, input.Execution, cancellationToken).ConfigureAwait(false);
        if (!claim.Won)
        {
            return new WorkflowResult { Status = "Duplicate", Done = true, Reason = $"{decision.Reason}; {claim.Reason}" };
        }
        Dictionary<string, string> saved = await _ledger.GetAsync(claim.AlertKey, cancellationToken).ConfigureAwait(false);
        AzureRunCommandState? state = saved.TryGetValue(StateAttribute, out string? stateJson)
            ? JsonSerializer.Deserialize<AzureRunCommandState>(stateJson, s_json) : null;
        Dictionary<string, int> attempts = WorkflowStepKit.Attempts(saved.GetValueOrDefault("attempts"));
        string step = input.Step.ToLowerInvariant();
        int attempt = WorkflowStepKit.CountAttempt(attempts, step);
        CaptureRequest request = WorkflowStepKit.Request(alert, OutputDirectory, Timeouts, Signer);
        CustodyRecorder recorder = WorkflowStepKit.Recorder(saved.GetValueOrDefault(CustodyAttribute), request, _log, "azure", alert.Target!, "runcommand-durable");
        if (step != "poll" || attempt == 1)
        {
            recorder.Step("workflow", $"{step} attempt {attempt} ({input.Execution}){(attempt > 1 ? ": resumed from the saved state" : "")}");
        }
        using ConnectorLease lease = _target.Create(alert, request, _log);
        var connector = (AzureCaptureConnector)lease.Connector;

        async Task Save(AzureRunCommandState? current, CancellationToken token)
        {
            state = current;
            connector.RecordRequestIds(recorder);
            var values = new Dictionary<string, string>
            {
                [CustodyAttribute] = recorder.Build().ToJson(),
                ["attempts"] = WorkflowStepKit.Attempts(attempts),
            };
            if (current is not null)
            {
                values[StateAttribute] = JsonSerializer.Serialize(current, s_json);
            }
            await _ledger.SaveAsync(claim, values, token).ConfigureAwait(false);
        }

        if (step != "poll")
        {
            // The attempt is on record before the step does anything: a worker killed during it leaves that trace.
            await Save(state, cancellationToken).ConfigureAwait(false);
        }
        try
        {
            if (BeforeStep is { } hook)
            {
                await hook(step, cancellationToken).ConfigureAwait(false);
            }
            WorkflowResult result = step switch
            {
                "start" => await StartAsync(connector, recorder, state, Save, cancellationToken).ConfigureAwait(false),
                "snapshots" => await SnapshotsAsync(connector, recorder, alert, input.Execution, state ?? throw NoState(step), Save, cancellationToken).ConfigureAwait(false),
                "poll" => await PollAsync(connector, alert, state ?? throw NoState(step), cancellationToken).ConfigureAwait(false),
                "verify" => await VerifyAsync(connector, recorder, state ?? throw NoState(step), cancellationToken).ConfigureAwait(false),
                "finalize" => await FinalizeAsync(connector, recorder, claim, Save, state, cancellationToken).ConfigureAwait(false),
                "fail" => await FailAsync(connector, recorder, claim, input, Save, state, cancellationToken).ConfigureAwait(false),
                _ => throw new TriggerEventException("$.step", $"'{input.Step}' is not start, snapshots, poll, verify, finalize or fail"),
            };
            if (result.Status is not ("Captured" or "Failed"))
            {
                await Save(state, cancellationToken).ConfigureAwait(false);
            }
            return result;
        }
        catch (Exception e) when (step != "fail")
        {
            await WorkflowStepKit.RecordStoppedAsync(recorder, step, attempt, e, token => Save(state, token), _log).ConfigureAwait(false);
            throw;
        }
    }

    private static CaptureException NoState(string step) => new($"workflow step {step}: no saved capture state (the start step did not run for this orchestration)");

    private static async Task<WorkflowResult> StartAsync(AzureCaptureConnector connector, CustodyRecorder recorder, AzureRunCommandState? state, Func<AzureRunCommandState?, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        if (state is null)
        {
            await connector.RecordOperatorAsync(recorder, cancellationToken).ConfigureAwait(false);
            (CapturePlan plan, _, AzureGuestTool tool) = await connector.PreflightAsync(cancellationToken).ConfigureAwait(false);
            recorder.Preflight(plan);
            state = connector.PlanLayout(recorder, tool);
            await save(state, cancellationToken).ConfigureAwait(false);
        }
        await connector.StartRunCommandAsync(recorder, state, (s, t) => save(s, t), cancellationToken).ConfigureAwait(false);
        return new WorkflowResult { Status = "Started", Reason = $"Run Command sent at {state.RequestedUtc:O}; evidence {state.EvidenceName}" };
    }

    private async Task<WorkflowResult> SnapshotsAsync(AzureCaptureConnector connector, CustodyRecorder recorder, AlertEvent alert, string execution, AzureRunCommandState state,
        Func<AzureRunCommandState?, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        if (!DiskSnapshots)
        {
            recorder.Step("disk snapshots", "skipped (CLOUDMEM_DISK_SNAPSHOTS=false)");
            return new WorkflowResult { Status = "Skipped", Reason = "disk snapshots are turned off" };
        }
        await connector.SnapshotDisksAsync(recorder, execution, alert.Id, state.DiskSnapshots, state.SnapshotCopies, ForensicTarget,
            token => save(state, token), AfterSnapshotCreate, cancellationToken).ConfigureAwait(false);
        return new WorkflowResult { Status = "Snapshotted", Reason = $"{state.DiskSnapshots.Count} managed-disk snapshot(s) of {alert.Target}, {state.SnapshotCopies.Count} forensic copies" };
    }

    private async Task<WorkflowResult> PollAsync(AzureCaptureConnector connector, AlertEvent alert, AzureRunCommandState state, CancellationToken cancellationToken)
    {
        AzureOperationStatus status = await connector.RunCommandStatusAsync(state, cancellationToken).ConfigureAwait(false);
        TimeSpan budget = connector.PollBudget;
        if (!status.Done && state.RequestedUtc is { } sent && DateTimeOffset.UtcNow - sent > budget)
        {
            throw new CaptureTimeoutException($"Run Command on {alert.Target}", budget, status.Status);
        }
        return new WorkflowResult { Status = status.Done ? "Ready" : "Running", Done = status.Done, Reason = $"Run Command: {status.Status}" };
    }

    private static async Task<WorkflowResult> VerifyAsync(AzureCaptureConnector connector, CustodyRecorder recorder, AzureRunCommandState state, CancellationToken cancellationToken)
    {
        if (recorder.Build().Evidence.Any(e => e.Name == state.EvidenceName))
        {
            return new WorkflowResult { Status = "Verified", Reason = $"{state.EvidenceName} already verified by an earlier attempt" };
        }
        AzureOperationStatus status = await connector.RunCommandStatusAsync(state, cancellationToken).ConfigureAwait(false);
        if (!status.Done)
        {
            throw new CaptureException($"Run Command has not finished ({status.Status}): verify runs after poll says done");
        }
        await connector.VerifyAsync(recorder, state, status.Output ?? "", cancellationToken).ConfigureAwait(false);
        return new WorkflowResult { Status = "Verified", Reason = $"{state.EvidenceName} read back and verified" };
    }

    private async Task<WorkflowResult> FinalizeAsync(AzureCaptureConnector connector, CustodyRecorder recorder, LedgerClaim claim, Func<AzureRunCommandState?, CancellationToken, Task> save, AzureRunCommandState? state, CancellationToken cancellationToken)
    {
        await connector.DeleteRunCommandAsync(recorder, state).ConfigureAwait(false);
        connector.RecordRequestIds(recorder);
        recorder.Complete();
        string manifest = await connector.WriteManifestAsync(recorder, cancellationToken).ConfigureAwait(false);
        await save(state, cancellationToken).ConfigureAwait(false);
        await _ledger.ReleaseAsync(claim, new LedgerOutcome("Captured", "Completed", manifest), cancellationToken).ConfigureAwait(false);
        return new WorkflowResult { Status = "Captured", Done = true, Reason = $"{recorder.TargetId}: Completed", Manifest = manifest };
    }

    private async Task<WorkflowResult> FailAsync(AzureCaptureConnector connector, CustodyRecorder recorder, LedgerClaim claim, WorkflowInput input, Func<AzureRunCommandState?, CancellationToken, Task> save, AzureRunCommandState? state, CancellationToken cancellationToken)
    {
        string cause = WorkflowStepKit.FailureCause(input);
        await connector.DeleteRunCommandAsync(recorder, state).ConfigureAwait(false);
        connector.RecordRequestIds(recorder);
        recorder.Fail(new CaptureException(cause));
        string manifest;
        try
        {
            manifest = await connector.WriteManifestAsync(recorder, cancellationToken).ConfigureAwait(false);
        }
        catch (CaptureException e)
        {
            recorder.Step("manifest", $"NOT uploaded beside the evidence: {e.Message}");
            manifest = recorder.Write();
        }
        await save(state, cancellationToken).ConfigureAwait(false);
        await _ledger.ReleaseAsync(claim, new LedgerOutcome("Failed", CaptureException.OneLine(cause), manifest), cancellationToken).ConfigureAwait(false);
        return new WorkflowResult { Status = "Failed", Done = true, Reason = CaptureException.OneLine(cause), Manifest = manifest };
    }
}
