using System.Text.Json.Serialization;

namespace CloudMem.Connectors.Azure;

/// <summary>
/// What a Run Command capture has done so far, saved by the durable workflow after every part that creates something
/// (camelCase JSON in the claim's table entity), so a restarted worker resumes instead of starting over.
/// </summary>
internal sealed class AzureRunCommandState
{
    /// <summary>AVML or WinPmem.</summary>
    [JsonConverter(typeof(JsonStringEnumConverter<AzureGuestTool>))]
    public required AzureGuestTool Tool { get; init; }

    /// <summary><c>{case}/{vm}-{start}</c>: the evidence blob is this plus the tool's extension.</summary>
    public required string BaseName { get; init; }

    /// <summary>When the run command was requested (saved before the PUT).</summary>
    public DateTimeOffset? RequestedUtc { get; set; }

    /// <summary>The managed run command's name (derived from <see cref="BaseName"/>).</summary>
    public required string RunCommandName { get; init; }

    /// <summary>ARM accepted the PUT of the run command (saved right after).</summary>
    public bool Accepted { get; set; }

    /// <summary>The run command was deleted after it ended.</summary>
    public bool Deleted { get; set; }

    /// <summary>Managed-disk snapshots made by the snapshots step: disk id to snapshot id (saved as soon as each PUT is accepted).</summary>
    public Dictionary<string, string> DiskSnapshots { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Forensic copies: snapshot id to the copy's id in the forensic subscription.</summary>
    public Dictionary<string, string> SnapshotCopies { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The evidence blob's name.</summary>
    [JsonIgnore]
    public string EvidenceName => $"{BaseName}.{(Tool == AzureGuestTool.Avml ? "avml" : "raw")}";
}

/// <summary>One read of the run command's instance view: finished or not, its executionState, the output, the error stream.</summary>
internal sealed record AzureOperationStatus(bool Done, string Status, string? Output, string? Error);
