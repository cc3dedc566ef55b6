using System.Text;

namespace CloudMem.Connectors.Core;

/// <summary>One preflight check: what was checked, whether it passed, and why (the observed value or the failure).</summary>
public sealed record PreflightCheck(string Name, bool Passed, string Reason);

/// <summary>One planned step, in order; <see cref="Mutating"/> steps change provider state and are skipped by --plan.</summary>
public sealed record PlannedStep(int Order, string Action, string Detail, bool Mutating);

/// <summary>
/// What a capture or isolation would do: preflight results and ordered steps, plus notes (limits, what this run
/// cannot do). Printed by <c>--plan</c>; built by calling only read-only provider APIs.
/// </summary>
public sealed class CapturePlan
{
    /// <summary>Creates an empty plan.</summary>
    public CapturePlan(string provider, string target, string method)
    {
        Provider = provider;
        Target = target;
        Method = method;
    }

    /// <summary>aws, azure, vsphere.</summary>
    public string Provider { get; }

    /// <summary>The instance / VM id.</summary>
    public string Target { get; }

    /// <summary>capture method (ssm-avml, ssm-winpmem, hibernate, isolate...).</summary>
    public string Method { get; }

    /// <summary>Preflight checks in the order they ran.</summary>
    public List<PreflightCheck> Checks { get; } = [];

    /// <summary>Steps in order.</summary>
    public List<PlannedStep> Steps { get; } = [];

    /// <summary>Free-form notes (for example what this connector cannot do).</summary>
    public List<string> Notes { get; } = [];

    /// <summary>Extra text shown in full (the generated guest script).</summary>
    public List<KeyValuePair<string, string>> Attachments { get; } = [];

    /// <summary>True when every check passed.</summary>
    public bool Ready => Checks.All(c => c.Passed);

    /// <summary>Adds a check and returns whether it passed.</summary>
    public bool Check(string name, bool passed, string reason)
    {
        Checks.Add(new PreflightCheck(name, passed, reason));
        return passed;
    }

    /// <summary>Appends a step.</summary>
    public void Step(string action, string detail, bool mutating = true) => Steps.Add(new PlannedStep(Steps.Count + 1, action, detail, mutating));

    /// <summary>The first failed check as a one-line error.</summary>
    /// <exception cref="CaptureException">when a check failed.</exception>
    public void ThrowIfNotReady()
    {
        PreflightCheck? failed = Checks.FirstOrDefault(c => !c.Passed);
        if (failed is not null)
        {
            throw new CaptureException($"{Provider} {Target}: preflight '{failed.Name}' failed: {failed.Reason}");
        }
    }

    /// <summary>Plain-text rendering (what --plan prints).</summary>
    public string ToText(SecretScrubber? scrubber = null)
    {
        var text = new StringBuilder();
        text.AppendLine($"Plan: {Provider} {Method} {Target}");
        text.AppendLine("Preflight:");
        foreach (PreflightCheck check in Checks)
        {
            text.AppendLine($"  [{(check.Passed ? "ok" : "FAIL")}] {check.Name}: {check.Reason}");
        }
        text.AppendLine(Ready ? "  all checks passed" : "  NOT READY: a check failed; nothing would be done");
        text.AppendLine("Steps:");
        foreach (PlannedStep step in Steps)
        {
            text.AppendLine($"  {step.Order,2}. {step.Action}{(step.Mutating ? "" : " (read-only)")}: {step.Detail}");
        }
        foreach (string note in Notes)
        {
            text.AppendLine($"Note: {note}");
        }
        foreach (KeyValuePair<string, string> attachment in Attachments)
        {
            text.AppendLine($"--- {attachment.Key} ---");
            text.AppendLine(attachment.Value.TrimEnd());
            text.AppendLine($"--- end of {attachment.Key} ---");
        }
        string result = text.ToString();
        return scrubber is null ? result : scrubber.Scrub(result);
    }
}
