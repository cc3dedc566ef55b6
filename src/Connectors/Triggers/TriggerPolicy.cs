using System.Globalization;

namespace CloudMem.Connectors.Triggers;

/// <summary>Whether an alert leads to a capture, and why (one line).</summary>
public sealed record TriggerDecision(bool Accepted, string Reason, AlertEvent Alert);

/// <summary>
/// Which alerts start a capture: severity at least <see cref="MinSeverity"/> (GuardDuty's scale; default 7 = High;
/// Defender's High is 8, Medium 5, Low 2), an optional allow-list of finding types / alert types, and only machines
/// (EC2 instances, Azure virtual machines).
/// </summary>
public sealed record TriggerPolicy
{
    /// <summary>Default threshold: GuardDuty High (7.0), Defender High.</summary>
    public const double DefaultMinSeverity = 7.0;

    /// <summary>Lowest severity that captures.</summary>
    public double MinSeverity { get; init; } = DefaultMinSeverity;

    /// <summary>Finding types / alert types (or names) allowed; empty = all. Case-insensitive; a trailing '*' matches a prefix.</summary>
    public IReadOnlyList<string> AllowedTypes { get; init; } = [];

    /// <summary>Parses a comma-separated allow-list ("" or null = all).</summary>
    public static IReadOnlyList<string> ParseAllowList(string? text)
        => string.IsNullOrWhiteSpace(text) ? [] : [.. text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)];

    /// <summary>Decides.</summary>
    public TriggerDecision Evaluate(AlertEvent alert)
    {
        string source = alert.Source == AlertSource.GuardDuty ? "GuardDuty finding" : "Defender alert";
        if (alert.Source == AlertSource.GuardDuty && (alert.ResourceType != "Instance" || alert.Target is null))
        {
            return new(false, $"refused: {source} {alert.Id} is about a {alert.ResourceType} resource, not an EC2 instance", alert);
        }
        if (alert.Source == AlertSource.Defender && alert.ResourceType != "virtualMachines")
        {
            return new(false, $"refused: {source} {alert.Id} is about {alert.Target} ({alert.ResourceType}), not a Microsoft.Compute virtual machine", alert);
        }
        if (alert.Source == AlertSource.GuardDuty && !System.Text.RegularExpressions.Regex.IsMatch(alert.Target!, "^i-[0-9a-f]{8,32}$"))
        {
            return new(false, $"refused: {source} {alert.Id} names '{alert.Target}', not an EC2 instance id", alert);
        }
        if (alert.Severity < MinSeverity)
        {
            return new(false, string.Create(CultureInfo.InvariantCulture, $"refused: {source} {alert.Id} severity {alert.Severity:0.#} ({alert.SeverityLabel}) is below the threshold {MinSeverity:0.#}"), alert);
        }
        if (AllowedTypes.Count > 0 && !AllowedTypes.Any(allowed => Matches(allowed, alert.Type)))
        {
            return new(false, $"refused: {source} {alert.Id} type '{alert.Type}' is not in the allow-list ({string.Join(", ", AllowedTypes)})", alert);
        }
        return new(true, string.Create(CultureInfo.InvariantCulture, $"accepted: {source} {alert.Id} type '{alert.Type}' severity {alert.Severity:0.#} ({alert.SeverityLabel}) on {alert.Target}"), alert);
    }

    private static bool Matches(string allowed, string type) => allowed.EndsWith('*')
        ? type.StartsWith(allowed[..^1], StringComparison.OrdinalIgnoreCase)
        : type.Equals(allowed, StringComparison.OrdinalIgnoreCase);
}
