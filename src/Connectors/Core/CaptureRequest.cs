namespace CloudMem.Connectors.Core;

/// <summary>Why a capture was started.</summary>
public enum TriggerKind
{
    /// <summary>An operator asked for it.</summary>
    Manual,
    /// <summary>An Amazon GuardDuty finding.</summary>
    GuardDuty,
    /// <summary>A Microsoft Defender for Cloud alert.</summary>
    Defender,
}

/// <summary>The trigger of a capture: kind and (for findings and alerts) its id.</summary>
public sealed record CaptureTrigger(TriggerKind Kind, string? Id)
{
    /// <summary>A manual capture.</summary>
    public static CaptureTrigger Manual { get; } = new(TriggerKind.Manual, null);

    /// <summary>Parses "manual", "guardduty:FINDING_ID" or "defender:ALERT_ID".</summary>
    /// <exception cref="CaptureException">any other form.</exception>
    public static CaptureTrigger Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text) || text.Equals("manual", StringComparison.OrdinalIgnoreCase))
        {
            return Manual;
        }
        int colon = text.IndexOf(':', StringComparison.Ordinal);
        string kind = colon < 0 ? text : text[..colon];
        string id = colon < 0 ? "" : text[(colon + 1)..].Trim();
        TriggerKind? parsed = kind.ToLowerInvariant() switch
        {
            "guardduty" => TriggerKind.GuardDuty,
            "defender" => TriggerKind.Defender,
            _ => null,
        };
        if (parsed is null || id.Length == 0 || id.Length > 256 || id.Any(char.IsControl))
        {
            throw new CaptureException($"trigger '{text}' is not 'manual', 'guardduty:FINDING_ID' or 'defender:ALERT_ID'");
        }
        return new CaptureTrigger(parsed.Value, id);
    }

    /// <inheritdoc />
    public override string ToString() => Id is null ? "manual" : $"{Kind.ToString().ToLowerInvariant()}:{Id}";
}

/// <summary>Limits on how long we wait.</summary>
public sealed record CaptureTimeouts
{
    /// <summary>What the command line's --timeout (minutes, for the guest command and each provider operation) and --poll (seconds) ask for.</summary>
    public static CaptureTimeouts From(double timeoutMinutes, double pollSeconds) => new()
    {
        Command = TimeSpan.FromMinutes(timeoutMinutes),
        Operation = TimeSpan.FromMinutes(timeoutMinutes),
        PollInterval = TimeSpan.FromSeconds(pollSeconds),
    };

    /// <summary>The guest command (acquisition + upload) as a whole.</summary>
    public TimeSpan Command { get; init; } = TimeSpan.FromHours(2);

    /// <summary>Between two status polls.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Provider-side long operations (stop, snapshot, export).</summary>
    public TimeSpan Operation { get; init; } = TimeSpan.FromMinutes(30);
}

/// <summary>What every capture or isolation request carries, whatever the provider.</summary>
public sealed record CaptureRequest
{
    /// <summary>Case id (tags, object names, manifest); null when none was given.</summary>
    public string? CaseId { get; init; }

    /// <summary>Why the capture was started.</summary>
    public CaptureTrigger Trigger { get; init; } = CaptureTrigger.Manual;

    /// <summary>Where the manifest (and a downloaded image) are written.</summary>
    public string OutputDirectory { get; init; } = ".";

    /// <summary>Waiting limits.</summary>
    public CaptureTimeouts Timeouts { get; init; } = new();

    /// <summary>Only check and describe: no mutating call.</summary>
    public bool PlanOnly { get; init; }

    /// <summary>Keep a local copy of the evidence in <see cref="OutputDirectory"/> (it is always read back and hashed).</summary>
    public bool Download { get; init; }

    /// <summary>Signs every manifest written (<c>MANIFEST.sig</c> beside it); null: unsigned.</summary>
    public IManifestSigner? Signer { get; init; }

    /// <summary>A case id safe for object names and tags: letters, digits, '-', '_', '.'.</summary>
    /// <exception cref="CaptureException">the case id has other characters or is too long.</exception>
    public static string? ValidateCaseId(string? caseId)
    {
        if (caseId is null)
        {
            return null;
        }
        if (caseId.Length is 0 or > 128 || !caseId.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
        {
            throw new CaptureException($"case id '{caseId}' must be 1-128 characters of letters, digits, '-', '_' or '.'");
        }
        return caseId;
    }
}
