using System.Text.Json;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Triggers;

/// <summary>
/// What every durable workflow step does the same way, whichever engine runs it (Step Functions with
/// <see cref="AwsWorkflowSteps"/>, the Durable Task Framework with <c>AzureWorkflowSteps</c>): read the event and apply
/// the policy again, build the request, continue the manifest saved so far, count attempts, name the failure.
/// </summary>
internal static class WorkflowStepKit
{
    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web);

    /// <summary>The alert and the policy's decision; a refusal is the step's whole result (nothing to do, nothing to retry).</summary>
    /// <exception cref="CaptureException">the alert comes from another provider than <paramref name="source"/>.</exception>
    public static (AlertEvent Alert, TriggerDecision Decision, WorkflowResult? Refused) Accept(WorkflowInput input, TriggerPolicy policy, AlertSource source, string workflow)
    {
        AlertEvent alert = AlertEventParser.Parse(JsonSerializer.SerializeToUtf8Bytes(input.Event));
        TriggerDecision decision = policy.Evaluate(alert);
        if (!decision.Accepted)
        {
            return (alert, decision, new WorkflowResult { Status = "Refused", Done = true, Reason = decision.Reason });
        }
        if (alert.Source != source)
        {
            throw new CaptureException($"{alert.Trigger}: the {workflow} workflow takes {(source == AlertSource.GuardDuty ? "GuardDuty findings" : "Defender alerts")} only");
        }
        return (alert, decision, null);
    }

    /// <summary>The capture request of a step (its output directory, one per case, created).</summary>
    public static CaptureRequest Request(AlertEvent alert, string outputDirectory, CaptureTimeouts timeouts, IManifestSigner? signer)
    {
        var request = new CaptureRequest
        {
            CaseId = CaptureRequest.ValidateCaseId(alert.CaseId),
            Trigger = alert.Trigger,
            OutputDirectory = Path.Combine(outputDirectory, alert.CaseId),
            Timeouts = timeouts,
            Signer = signer,
        };
        Directory.CreateDirectory(request.OutputDirectory);
        return request;
    }

    /// <summary>The manifest so far (saved by an earlier step), or a new one.</summary>
    public static CustodyRecorder Recorder(string? savedManifest, CaptureRequest request, CaptureLog log, string provider, string target, string method)
        => savedManifest is not null
            ? CustodyRecorder.Resume(JsonSerializer.Deserialize<CustodyManifest>(savedManifest, CustodyManifest.JsonOptions)!, request, log)
            : new CustodyRecorder(provider, target, method, request, log);

    /// <summary>Attempts per step saved so far, with this step's counted; returns this step's attempt number.</summary>
    public static int CountAttempt(Dictionary<string, int> attempts, string step) => attempts[step] = attempts.GetValueOrDefault(step) + 1;

    /// <summary>Saved attempts per step (empty when none).</summary>
    public static Dictionary<string, int> Attempts(string? saved)
        => saved is null ? [] : JsonSerializer.Deserialize<Dictionary<string, int>>(saved, s_json) ?? [];

    /// <summary>Saved attempts as JSON.</summary>
    public static string Attempts(Dictionary<string, int> attempts) => JsonSerializer.Serialize(attempts, s_json);

    /// <summary>
    /// Records that attempt <paramref name="attempt"/> of <paramref name="step"/> stopped with <paramref name="error"/>
    /// and saves the state (20 s at most; a save that fails is only logged), before the engine retries the step or
    /// takes the failure path.
    /// </summary>
    public static async Task RecordStoppedAsync(CustodyRecorder recorder, string step, int attempt, Exception error, Func<CancellationToken, Task> save, CaptureLog log)
    {
        recorder.Step("workflow", $"{step} attempt {attempt} stopped: {CaptureException.OneLine(error.Message)}");
        using var saving = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        try
        {
            await save(saving.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is CaptureException or OperationCanceledException)
        {
            log.Warn($"could not save the workflow state: {e.Message}");
        }
    }

    /// <summary>The failure the engine caught, as one line ("Error: Cause").</summary>
    public static string FailureCause(WorkflowInput input)
        => input.Error is { ValueKind: JsonValueKind.Object } error
            ? $"{(error.TryGetProperty("Error", out JsonElement name) ? name.ToString() : "error")}: {(error.TryGetProperty("Cause", out JsonElement text) ? text.ToString() : "")}"
            : "the workflow failed";
}

/// <summary>The settings every durable workflow's steps share (AWS Step Functions, Azure Durable Task).</summary>
public abstract class WorkflowStepSettings
{
    /// <summary>Creates the settings with the policy applied at every step.</summary>
    protected WorkflowStepSettings(TriggerPolicy policy) => Policy = policy;

    /// <summary>The policy (applied again at every step: the event travels with the execution).</summary>
    public TriggerPolicy Policy { get; }

    /// <summary>Command timeout (the poll step gives up after it) and poll interval.</summary>
    public CaptureTimeouts Timeouts { get; init; } = new();

    /// <summary>Where manifests are written locally (one sub-directory per case).</summary>
    public string OutputDirectory { get; init; } = ".";

    /// <summary>Signs every manifest written.</summary>
    public IManifestSigner? Signer { get; init; }

    /// <summary>Added to the command timeout for the machine lock's lifetime.</summary>
    public TimeSpan LockMargin { get; init; } = TimeSpan.FromMinutes(30);
}
