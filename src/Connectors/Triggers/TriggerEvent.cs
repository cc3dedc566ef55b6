using System.Globalization;
using System.Text;
using System.Text.Json;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Triggers;

/// <summary>Which cloud an alert event came from.</summary>
public enum AlertSource
{
    /// <summary>An Amazon GuardDuty finding (raw, or the detail of an EventBridge event).</summary>
    GuardDuty,
    /// <summary>A Microsoft Defender for Cloud alert (its own JSON, the Azure Monitor common alert schema, or inside an Event Grid event).</summary>
    Defender,
}

/// <summary>
/// What an alert says about one machine, provider-neutral: who raised it, its id and type, the severity as a number
/// (GuardDuty's 1.0-10.0; Defender's labels mapped to Low 2, Medium 5, High 8) and label, and the target
/// (an EC2 instance id with its region and account, or an Azure VM resource id).
/// </summary>
public sealed record AlertEvent
{
    /// <summary>GuardDuty or Defender.</summary>
    public required AlertSource Source { get; init; }

    /// <summary>Finding id / alert id (systemAlertId or the alert resource's name).</summary>
    public required string Id { get; init; }

    /// <summary>Finding type (e.g. CryptoCurrency:EC2/BitcoinTool.B!DNS) or alert type/name.</summary>
    public required string Type { get; init; }

    /// <summary>Severity on GuardDuty's scale.</summary>
    public required double Severity { get; init; }

    /// <summary>Low, Medium, High, Critical (GuardDuty, from the number) or Defender's label.</summary>
    public required string SeverityLabel { get; init; }

    /// <summary>The resource type the alert names ("Instance", "virtualMachines", ...).</summary>
    public required string ResourceType { get; init; }

    /// <summary>EC2 instance id or Azure VM resource id; null when the alert names no machine.</summary>
    public string? Target { get; init; }

    /// <summary>AWS region (GuardDuty).</summary>
    public string? Region { get; init; }

    /// <summary>AWS account id or Azure subscription id.</summary>
    public string? Account { get; init; }

    /// <summary>Where it was read from (for logs): "eventbridge", "finding", "defender", "common-alert-schema", "event-grid".</summary>
    public required string Envelope { get; init; }

    /// <summary>The trigger recorded in the custody manifest.</summary>
    public CaptureTrigger Trigger => new(Source == AlertSource.GuardDuty ? TriggerKind.GuardDuty : TriggerKind.Defender, Id);

    /// <summary>
    /// A case id derived from the alert id, safe for object names and tags: "gd-" or "defender-" followed by the id's
    /// letters, digits, '-', '_' and '.', other characters as '-', cut to 128 characters.
    /// </summary>
    public string CaseId
    {
        get
        {
            var text = new StringBuilder(Source == AlertSource.GuardDuty ? "gd-" : "defender-");
            foreach (char c in Id)
            {
                if (text.Length >= 128)
                {
                    break;
                }
                text.Append(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '-');
            }
            return text.ToString();
        }
    }

    /// <summary>One line for logs.</summary>
    public override string ToString() => string.Create(CultureInfo.InvariantCulture,
        $"{(Source == AlertSource.GuardDuty ? "guardduty" : "defender")} {Id} ({Envelope}) type {Type} severity {Severity:0.#} {SeverityLabel} on {ResourceType} {Target ?? "-"}");
}

/// <summary>An event that cannot be read: names the JSON path of the missing or bad field.</summary>
public sealed class TriggerEventException : CaptureException
{
    /// <summary>Creates the exception; the message is "event: PATH: PROBLEM".</summary>
    public TriggerEventException(string path, string problem, Exception? inner = null)
        : base($"event: {path}: {problem}", inner)
    {
        Path = path;
    }

    /// <summary>JSON path of the field ("$.detail.resource.instanceDetails.instanceId").</summary>
    public string Path { get; }
}

/// <summary>Limits on the events we read (they arrive from the network in the unattended runners).</summary>
public static class TriggerLimits
{
    /// <summary>Largest event accepted (GuardDuty findings are a few KiB; Lambda payloads are capped at 6 MiB).</summary>
    public const int MaxEventBytes = 1 << 20;

    /// <summary>Deepest JSON nesting accepted.</summary>
    public const int MaxDepth = 64;
}
