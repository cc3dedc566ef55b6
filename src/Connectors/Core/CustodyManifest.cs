using System.Text.Json;
using System.Text.Json.Serialization;

namespace CloudMem.Connectors.Core;

/// <summary>Outcome of a capture or isolation.</summary>
public enum CustodyStatus
{
    /// <summary>Still running (a manifest written mid-way, e.g. before a crash, says so).</summary>
    InProgress,
    /// <summary>Done; for a capture every evidence item was hashed on our side, matched and opened with our parsers.</summary>
    Completed,
    /// <summary>Stopped with an error (see <see cref="CustodyManifest.Error"/>).</summary>
    Failed,
}

/// <summary>Trigger as recorded.</summary>
public sealed record TriggerRecord(string Kind, string? Id);

/// <summary>Who ran it: the provider identity (ARN, object id, user name) and how it was learned.</summary>
public sealed record OperatorRecord(string Identity, string Source);

/// <summary>Where it ran.</summary>
public sealed record HostRecord(string Machine, string CloudmemVersion, string Os);

/// <summary>An acquisition tool sent to the guest.</summary>
public sealed record ToolRecord(string Name, string? Version, string Sha256, string SourceUri);

/// <summary>A step as it happened (UTC).</summary>
public sealed record StepRecord(DateTimeOffset Time, string Action, string Detail);

/// <summary>A provider request id (AWS x-amzn-RequestId, Azure x-ms-request-id, vSphere opId).</summary>
public sealed record RequestIdRecord(string Service, string Operation, string RequestId, DateTimeOffset Time);

/// <summary>A provider resource made or changed for the case (snapshot id, security group, tag...).</summary>
public sealed record ResourceRecord(string Kind, string Id, string Detail);

/// <summary>
/// What the storage service said about the stored evidence object when it was read back: its version id (S3 with
/// versioning, Blob versioning), ETag, and the server-side checksums it returned, by name ("x-amz-checksum-sha256",
/// "content-md5", "x-ms-content-crc64"), as the service encodes them (base64). Absent values are omitted.
/// </summary>
public sealed record StoredObjectRecord(string? VersionId, string? ETag, IReadOnlyDictionary<string, string>? Checksums);

/// <summary>
/// An evidence item. <see cref="Sha256"/> is computed on OUR side while the bytes streamed back from where they are
/// stored; <see cref="SourceSha256"/> is what the producer (guest, upload) reported; <see cref="Verified"/> is true only
/// when both agree, the sizes agree, and <see cref="OpenedAs"/> names the format our parsers opened it as.
/// </summary>
public sealed record EvidenceRecord(
    string Name,
    string Uri,
    string? LocalPath,
    long SizeBytes,
    string Sha256,
    string? SourceSha256,
    bool Verified,
    string? OpenedAs,
    string? Problem,
    StoredObjectRecord? Stored = null);

/// <summary>
/// The chain-of-custody manifest written next to the evidence (JSON, camelCase, <see cref="CurrentSchemaVersion"/>).
/// Build it with <see cref="CustodyRecorder"/>.
/// </summary>
public sealed record CustodyManifest
{
    /// <summary>Version of this layout.</summary>
    public const int CurrentSchemaVersion = 1;

    /// <summary>Serializer settings used for every manifest.</summary>
    public static JsonSerializerOptions JsonOptions { get; } = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
        Converters = { new JsonStringEnumConverter() },
    };

    /// <summary>Layout version.</summary>
    public int SchemaVersion { get; init; } = CurrentSchemaVersion;

    /// <summary>Case id, if given.</summary>
    public string? CaseId { get; init; }

    /// <summary>Why.</summary>
    public required TriggerRecord Trigger { get; init; }

    /// <summary>aws, azure, vsphere.</summary>
    public required string Provider { get; init; }

    /// <summary>Instance / VM id.</summary>
    public required string TargetId { get; init; }

    /// <summary>Capture or isolation method.</summary>
    public required string Method { get; init; }

    /// <summary>Who.</summary>
    public OperatorRecord? Operator { get; init; }

    /// <summary>Where.</summary>
    public required HostRecord Host { get; init; }

    /// <summary>Tools sent to the guest.</summary>
    public IReadOnlyList<ToolRecord> Tools { get; init; } = [];

    /// <summary>What was done, in order.</summary>
    public IReadOnlyList<StepRecord> Steps { get; init; } = [];

    /// <summary>Every provider request id.</summary>
    public IReadOnlyList<RequestIdRecord> RequestIds { get; init; } = [];

    /// <summary>Provider resources made or changed.</summary>
    public IReadOnlyList<ResourceRecord> Resources { get; init; } = [];

    /// <summary>Evidence items.</summary>
    public IReadOnlyList<EvidenceRecord> Evidence { get; init; } = [];

    /// <summary>Start (UTC).</summary>
    public DateTimeOffset StartedUtc { get; init; }

    /// <summary>End (UTC), when finished.</summary>
    public DateTimeOffset? CompletedUtc { get; init; }

    /// <summary>Outcome.</summary>
    public CustodyStatus Status { get; init; }

    /// <summary>One-line error when <see cref="Status"/> is Failed.</summary>
    public string? Error { get; init; }

    /// <summary>JSON text.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, JsonOptions);

    /// <summary>Reads a manifest.</summary>
    public static CustodyManifest Read(string path)
        => JsonSerializer.Deserialize<CustodyManifest>(File.ReadAllText(path), JsonOptions)
            ?? throw new CaptureException($"{path}: not a custody manifest");

    /// <summary>
    /// Writes the manifest atomically: a temporary file in the same directory, flushed to disk, then moved over
    /// <paramref name="path"/> (readers see the old or the new manifest, never half of one).
    /// </summary>
    public void WriteAtomic(string path)
    {
        string full = Path.GetFullPath(path);
        string directory = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(directory);
        string temp = Path.Combine(directory, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        try
        {
            using (var file = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None))
            {
                JsonSerializer.Serialize(file, this, JsonOptions);
                file.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
    }
}
