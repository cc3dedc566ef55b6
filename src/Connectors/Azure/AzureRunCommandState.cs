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

    /// <summary>When Run Command was requested (saved before the request).</summary>
    public DateTimeOffset? RequestedUtc { get; set; }

    /// <summary>The operation's Azure-AsyncOperation URL (saved once ARM accepted the command).</summary>
    public string? OperationUrl { get; set; }

    /// <summary>The operation's Location URL (the result, when the status body carries none).</summary>
    public string? ResultUrl { get; set; }

    /// <summary>The evidence blob's name.</summary>
    [JsonIgnore]
    public string EvidenceName => $"{BaseName}.{(Tool == AzureGuestTool.Avml ? "avml" : "raw")}";
}

/// <summary>One read of an ARM long-running operation: finished or not, its status, the Run Command output once done, the error text.</summary>
internal sealed record AzureOperationStatus(bool Done, string Status, string? Output, string? Error);
