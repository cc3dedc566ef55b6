using System.Text.Json;
using System.Text.Json.Serialization;
using Azure.Core;
using Azure.Storage;
using Azure.Storage.Blobs;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Triggers;

/// <summary>A connector built for one alert, and what it owns (SDK clients), disposed after the capture.</summary>
public sealed class ConnectorLease(ICaptureConnector connector, IDisposable? owned = null) : IDisposable
{
    /// <summary>The connector.</summary>
    public ICaptureConnector Connector { get; } = connector;

    /// <inheritdoc />
    public void Dispose() => owned?.Dispose();
}

/// <summary>Builds the existing provider connector for an accepted alert (the responder holds no capture logic).</summary>
public interface IResponderTarget
{
    /// <summary>The alerts this target captures.</summary>
    AlertSource Source { get; }

    /// <summary>The connector for the alert's machine.</summary>
    ConnectorLease Create(AlertEvent alert, CaptureRequest request, CaptureLog log);
}

/// <summary>AWS: an <see cref="AwsCaptureConnector"/> in the finding's region, evidence to the configured bucket.</summary>
public sealed class AwsResponderTarget : IResponderTarget
{
    private readonly Func<string?, AwsConnection> _connection;
    private readonly string _bucket;
    private readonly string _prefix;
    private readonly string? _toolFile;
    private readonly long? _minPartBytes;
    private readonly EvidenceOpener _opener;

    /// <summary>The SSM documents SendCommand runs (the stack's pinned copies in production).</summary>
    public SsmDocuments Documents { get; init; } = SsmDocuments.AwsOwned;

    /// <summary>Creates the target; <paramref name="connection"/> gives the connection for a region (the finding's).</summary>
    public AwsResponderTarget(Func<string?, AwsConnection> connection, string bucket, string prefix, string? toolFile, EvidenceOpener opener, long? minPartBytes = null)
    {
        _connection = connection;
        _bucket = bucket;
        _prefix = prefix;
        _toolFile = toolFile;
        _opener = opener;
        _minPartBytes = minPartBytes;
    }

    /// <inheritdoc />
    public AlertSource Source => AlertSource.GuardDuty;

    /// <inheritdoc />
    public ConnectorLease Create(AlertEvent alert, CaptureRequest request, CaptureLog log)
    {
        AwsClients clients = AwsClients.Create(_connection(alert.Region));
        try
        {
            var options = new AwsCaptureOptions
            {
                InstanceId = alert.Target!,
                Bucket = _bucket,
                Prefix = _prefix,
                ToolFile = _toolFile,
                Download = request.Download,
                Documents = Documents,
            };
            if (_minPartBytes is { } part)
            {
                options = options with { MinPartBytes = part };
            }
            return new ConnectorLease(new AwsCaptureConnector(clients, options, request, log, _opener), clients);
        }
        catch
        {
            clients.Dispose();
            throw;
        }
    }
}

/// <summary>Azure: an <see cref="AzureCaptureConnector"/> (Run Command) for the alert's VM, evidence to the configured container.</summary>
public sealed class AzureResponderTarget : IResponderTarget
{
    private readonly Uri _container;
    private readonly Func<TokenCredential> _credential;
    private readonly StorageSharedKeyCredential? _storageKey;
    private readonly string? _toolFile;
    private readonly string? _toolVersion;
    private readonly EvidenceOpener _opener;
    private readonly AzureArmSettings _arm;
    private readonly BlobClientOptions? _blobOptions;

    internal AzureResponderTarget(Uri container, Func<TokenCredential> credential, StorageSharedKeyCredential? storageKey, AzureArmSettings arm, string? toolFile, string? toolVersion, EvidenceOpener opener, BlobClientOptions? blobOptions = null)
    {
        _blobOptions = blobOptions;
        _container = container;
        _credential = credential;
        _storageKey = storageKey;
        _arm = arm;
        _toolFile = toolFile;
        _toolVersion = toolVersion;
        _opener = opener;
    }

    /// <inheritdoc />
    public AlertSource Source => AlertSource.Defender;

    /// <inheritdoc />
    public ConnectorLease Create(AlertEvent alert, CaptureRequest request, CaptureLog log)
    {
        var options = new AzureCaptureOptions
        {
            VmId = AzureTarget.ParseVmId(alert.Target!),
            ContainerUrl = _container,
            Credential = _credential(),
            StorageKey = _storageKey,
            Arm = _arm,
            BlobOptions = _blobOptions,
            ToolFile = _toolFile,
            ToolVersion = _toolVersion,
        };
        return new ConnectorLease(new AzureCaptureConnector(options, request, log, _opener));
    }
}

/// <summary>What a response did.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ResponseStatus>))]
public enum ResponseStatus
{
    /// <summary>The policy refused the alert (not an error: nothing to retry).</summary>
    Refused,
    /// <summary>Plan only (dry run): preflight and steps.</summary>
    Planned,
    /// <summary>Captured and verified; the manifest is written.</summary>
    Captured,
    /// <summary>The event could not be read, or the capture failed.</summary>
    Failed,
    /// <summary>Another delivery of the same alert, or another alert's capture of the same machine, holds the claim (<see cref="ICaptureLedger"/>): the tool is not run.</summary>
    Duplicate,
    /// <summary>The durable workflow was started for the alert (the Function answers at once; a worker captures).</summary>
    Started,
}

/// <summary>The outcome of one alert, as the runners return it (JSON, camelCase).</summary>
public sealed record ResponseOutcome
{
    /// <summary>Refused, Planned, Captured, Failed.</summary>
    public required ResponseStatus Status { get; init; }

    /// <summary>One line: the policy's reason, the plan's readiness, or the error.</summary>
    public required string Reason { get; init; }

    /// <summary>aws / azure, when the event was read.</summary>
    public string? Provider { get; init; }

    /// <summary>Trigger (guardduty:ID / defender:ID).</summary>
    public string? Trigger { get; init; }

    /// <summary>Case id derived from the alert.</summary>
    public string? CaseId { get; init; }

    /// <summary>Instance id or VM resource id.</summary>
    public string? Target { get; init; }

    /// <summary>Plan text (Planned), scrubbed.</summary>
    public string? Plan { get; init; }

    /// <summary>Whether every preflight check passed (Planned).</summary>
    public bool? Ready { get; init; }

    /// <summary>Manifest path (Captured, or Failed after the connector wrote it).</summary>
    public string? Manifest { get; init; }

    /// <summary>Evidence URIs with their SHA-256 (Captured).</summary>
    public IReadOnlyList<string>? Evidence { get; init; }

    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web) { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull, WriteIndented = false };

    /// <summary>camelCase JSON.</summary>
    public string ToJson() => JsonSerializer.Serialize(this, s_json);
}

/// <summary>
/// The unattended path: alert -> policy -> the existing connector's plan or capture. Used by <c>cloudmem respond</c>,
/// the Lambda runtime loop and the Azure Functions custom handler alike.
/// </summary>
public sealed class AlertResponder
{
    private readonly IReadOnlyList<IResponderTarget> _targets;
    private readonly CaptureLog _log;

    /// <summary>Creates the responder.</summary>
    public AlertResponder(TriggerPolicy policy, IReadOnlyList<IResponderTarget> targets, CaptureLog log)
    {
        Policy = policy;
        _targets = targets;
        _log = log;
    }

    /// <summary>The policy.</summary>
    public TriggerPolicy Policy { get; }

    /// <summary>Plan only (no mutating call).</summary>
    public bool PlanOnly { get; init; }

    /// <summary>Where manifests go (one sub-directory per case).</summary>
    public string OutputDirectory { get; init; } = ".";

    /// <summary>Keep a local copy of the evidence.</summary>
    public bool Download { get; init; }

    /// <summary>Waiting limits.</summary>
    public CaptureTimeouts Timeouts { get; init; } = new();

    /// <summary>
    /// De-duplication and per-machine lock (null: none, every delivery captures). Consulted only for captures (a dry
    /// run changes nothing and claims nothing). The lock is held for the guest command's timeout plus
    /// <see cref="LockMargin"/>.
    /// </summary>
    public ICaptureLedger? Ledger { get; init; }

    /// <summary>Signs every manifest the captures write (null: unsigned).</summary>
    public IManifestSigner? Signer { get; init; }

    /// <summary>Added to <see cref="CaptureTimeouts.Command"/> for the lock's lifetime (staging, read-back, verification).</summary>
    public TimeSpan LockMargin { get; init; } = TimeSpan.FromMinutes(30);

    /// <summary>Parses the event and responds. A malformed event throws <see cref="TriggerEventException"/>.</summary>
    public Task<ResponseOutcome> RespondAsync(ReadOnlyMemory<byte> eventJson, CancellationToken cancellationToken)
        => RespondAsync(AlertEventParser.Parse(eventJson.Span), cancellationToken);

    /// <summary>Decides, then plans or captures with the provider's connector.</summary>
    /// <exception cref="CaptureException">no target configured for the provider, or the capture failed (the manifest is written first).</exception>
    public async Task<ResponseOutcome> RespondAsync(AlertEvent alert, CancellationToken cancellationToken)
    {
        string provider = alert.Source == AlertSource.GuardDuty ? "aws" : "azure";
        _log.Info($"event: {alert}");
        TriggerDecision decision = Policy.Evaluate(alert);
        _log.Info(decision.Reason);
        var outcome = new ResponseOutcome
        {
            Status = ResponseStatus.Refused,
            Reason = decision.Reason,
            Provider = provider,
            Trigger = alert.Trigger.ToString(),
            CaseId = alert.CaseId,
            Target = alert.Target,
        };
        if (!decision.Accepted)
        {
            return outcome;
        }
        IResponderTarget target = _targets.FirstOrDefault(t => t.Source == alert.Source)
            ?? throw new CaptureException($"{decision.Reason}, but no {provider} target is configured ({(provider == "aws" ? "evidence bucket" : "evidence container URL")})");
        var request = new CaptureRequest
        {
            CaseId = CaptureRequest.ValidateCaseId(alert.CaseId),
            Trigger = alert.Trigger,
            OutputDirectory = Path.Combine(OutputDirectory, alert.CaseId),
            PlanOnly = PlanOnly,
            Download = Download,
            Timeouts = Timeouts,
            Signer = Signer,
        };
        LedgerClaim? claim = null;
        if (Ledger is not null && !PlanOnly)
        {
            claim = await Ledger.ClaimAsync(alert, Timeouts.Command + LockMargin, cancellationToken).ConfigureAwait(false);
            if (!claim.Won)
            {
                return outcome with { Status = ResponseStatus.Duplicate, Reason = $"{decision.Reason}; {claim.Reason}" };
            }
        }
        CaptureResult result;
        try
        {
            Directory.CreateDirectory(request.OutputDirectory);
            using ConnectorLease lease = target.Create(alert, request, _log);
            if (PlanOnly)
            {
                CapturePlan plan = await lease.Connector.PlanAsync(cancellationToken).ConfigureAwait(false);
                return outcome with
                {
                    Status = ResponseStatus.Planned,
                    Reason = plan.Ready ? $"{decision.Reason}; plan ready (dry run: nothing changed)" : $"{decision.Reason}; plan NOT ready: {plan.Checks.First(c => !c.Passed).Name}: {plan.Checks.First(c => !c.Passed).Reason}",
                    Plan = plan.ToText(_log.Scrubber),
                    Ready = plan.Ready,
                };
            }
            result = await lease.Connector.CaptureAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (claim is not null)
        {
            // The failure is recorded (a re-delivery does not run the tool on the guest again) and the lock released;
            // the capture's own error is what the caller sees.
            await ReleaseQuietlyAsync(claim, new LedgerOutcome("Failed", e.Message, null)).ConfigureAwait(false);
            throw;
        }
        if (claim is not null)
        {
            await Ledger!.ReleaseAsync(claim, new LedgerOutcome("Captured", result.Manifest.Status.ToString(), result.ManifestPath), cancellationToken).ConfigureAwait(false);
        }
        return outcome with
        {
            Status = ResponseStatus.Captured,
            Reason = $"{decision.Reason}; {result.Manifest.Status}",
            Manifest = result.ManifestPath,
            Evidence = [.. result.Manifest.Evidence.Select(e => $"{e.Uri} sha256:{e.Sha256}")],
        };
    }

    private async Task ReleaseQuietlyAsync(LedgerClaim claim, LedgerOutcome outcome)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        try
        {
            await Ledger!.ReleaseAsync(claim, outcome, timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is CaptureException or OperationCanceledException)
        {
            _log.Warn($"could not record the failure in the ledger (the lock expires by itself): {e.Message}");
        }
    }

}
