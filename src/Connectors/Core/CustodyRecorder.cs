using System.Reflection;
using System.Runtime.InteropServices;

namespace CloudMem.Connectors.Core;

/// <summary>
/// Opens a local evidence file with our parsers and returns the format name it was opened as; throws (one line) when
/// it does not open. Supplied by the CLI (Connectors reference no parser).
/// </summary>
public delegate string EvidenceOpener(string localPath);

/// <summary>
/// Builds a <see cref="CustodyManifest"/> while a capture runs: steps, request ids, tools, resources and evidence,
/// every text scrubbed of secrets, every step also logged. <see cref="Complete"/> enforces the custody rule:
/// Completed only when every evidence item is verified (our streamed SHA-256 equals the stored object's / producer's,
/// sizes agree) and opened with our parsers.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class CustodyRecorder
{
    private readonly Lock _lock = new();
    private readonly List<StepRecord> _steps = [];
    private readonly List<RequestIdRecord> _requestIds = [];
    private readonly List<ToolRecord> _tools = [];
    private readonly List<ResourceRecord> _resources = [];
    private readonly List<EvidenceRecord> _evidence = [];
    private DateTimeOffset _started = DateTimeOffset.UtcNow;
    private OperatorRecord? _operator;
    private DateTimeOffset? _completed;
    private CustodyStatus _status = CustodyStatus.InProgress;
    private string? _error;

    /// <summary>Starts a record for one capture or isolation.</summary>
    public CustodyRecorder(string provider, string targetId, string method, CaptureRequest request, CaptureLog log)
    {
        Provider = provider;
        TargetId = targetId;
        Method = method;
        Request = request;
        Log = log;
    }

    /// <summary>
    /// Continues a run from the manifest an earlier attempt left (a workflow step that was restarted): same start time
    /// (so the same manifest name), steps, request ids, tools, resources, evidence and operator; status InProgress.
    /// </summary>
    public static CustodyRecorder Resume(CustodyManifest manifest, CaptureRequest request, CaptureLog log)
    {
        var recorder = new CustodyRecorder(manifest.Provider, manifest.TargetId, manifest.Method, request, log)
        {
            _started = manifest.StartedUtc,
            _operator = manifest.Operator,
        };
        recorder._steps.AddRange(manifest.Steps);
        recorder._requestIds.AddRange(manifest.RequestIds);
        recorder._tools.AddRange(manifest.Tools);
        recorder._resources.AddRange(manifest.Resources);
        recorder._evidence.AddRange(manifest.Evidence);
        return recorder;
    }

    /// <summary>aws, azure, vsphere.</summary>
    public string Provider { get; }

    /// <summary>Instance / VM id.</summary>
    public string TargetId { get; }

    /// <summary>Method.</summary>
    public string Method { get; }

    /// <summary>The request.</summary>
    public CaptureRequest Request { get; }

    /// <summary>The log steps go to.</summary>
    public CaptureLog Log { get; }

    private SecretScrubber Scrubber => Log.Scrubber;

    /// <summary>Status so far.</summary>
    public CustodyStatus Status
    {
        get
        {
            lock (_lock)
            {
                return _status;
            }
        }
    }

    /// <summary>Records (and logs) a step.</summary>
    public void Step(string action, string detail)
    {
        var step = new StepRecord(DateTimeOffset.UtcNow, Scrubber.Scrub(action), Scrubber.Scrub(detail));
        lock (_lock)
        {
            _steps.Add(step);
        }
        Log.Info($"{step.Action}: {step.Detail}");
    }

    /// <summary>Records a provider request id (ignored when null or empty: the manifest lists only real ids).</summary>
    public void RequestId(string service, string operation, string? requestId)
    {
        if (string.IsNullOrEmpty(requestId))
        {
            Log.Warn($"{service} {operation}: the response carried no request id");
            return;
        }
        lock (_lock)
        {
            _requestIds.Add(new RequestIdRecord(service, operation, Scrubber.Scrub(requestId), DateTimeOffset.UtcNow));
        }
    }

    /// <summary>Records who runs the capture.</summary>
    public void Operator(string identity, string source)
    {
        lock (_lock)
        {
            _operator = new OperatorRecord(Scrubber.Scrub(identity), source);
        }
    }

    /// <summary>Records a tool sent to the guest (source URI without any query string).</summary>
    public void Tool(string name, string? version, string sha256, string sourceUri)
    {
        lock (_lock)
        {
            _tools.Add(new ToolRecord(name, version, sha256, Scrubber.Scrub(SecretScrubber.WithoutQuery(sourceUri))));
        }
    }

    /// <summary>Records a resource made or changed (snapshot, security group...).</summary>
    public void Resource(string kind, string id, string detail)
    {
        lock (_lock)
        {
            _resources.Add(new ResourceRecord(kind, id, Scrubber.Scrub(detail)));
        }
    }

    /// <summary>
    /// Records an evidence item after verification. Verified when <paramref name="ourSha256"/> (computed on our side
    /// while the bytes streamed) equals <paramref name="sourceSha256"/>, the sizes agree, and it opened as a format.
    /// </summary>
    public EvidenceRecord Evidence(
        string name, string uri, string? localPath, long sizeBytes, long expectedSize,
        string ourSha256, string? sourceSha256, string? openedAs, string? openProblem, StoredObjectRecord? stored = null)
    {
        string? problem = null;
        if (sizeBytes != expectedSize)
        {
            problem = $"size {sizeBytes} bytes, expected {expectedSize}";
        }
        else if (sourceSha256 is null)
        {
            problem = "no producer-side SHA-256 to compare with";
        }
        else if (!string.Equals(ourSha256, sourceSha256, StringComparison.OrdinalIgnoreCase))
        {
            problem = $"SHA-256 {ourSha256} computed while streaming differs from {sourceSha256}";
        }
        else if (openedAs is null)
        {
            problem = $"does not open with our parsers: {openProblem ?? "not tried"}";
        }
        var record = new EvidenceRecord(name, Scrubber.Scrub(SecretScrubber.WithoutQuery(uri)), localPath, sizeBytes,
            ourSha256.ToLowerInvariant(), sourceSha256?.ToLowerInvariant(), problem is null, openedAs, problem is null ? null : Scrubber.Scrub(problem), stored);
        lock (_lock)
        {
            _evidence.Add(record);
        }
        Step("verify evidence", problem is null
            ? $"{record.Name}: {sizeBytes} bytes, sha256 {record.Sha256} matches, opens as {openedAs}"
            : $"{record.Name}: NOT verified: {problem}");
        return record;
    }

    /// <summary>
    /// Marks the run Completed. For a run with evidence, every item must be verified and opened.
    /// </summary>
    /// <exception cref="CaptureException">an evidence item is not verified (the run is marked Failed).</exception>
    public void Complete()
    {
        EvidenceRecord? bad;
        lock (_lock)
        {
            bad = _evidence.FirstOrDefault(e => !e.Verified || e.OpenedAs is null);
        }
        if (bad is not null)
        {
            var error = new CaptureException($"evidence {bad.Name} is not verified: {bad.Problem}");
            Fail(error);
            throw error;
        }
        lock (_lock)
        {
            _status = CustodyStatus.Completed;
            _completed = DateTimeOffset.UtcNow;
        }
        Log.Info($"{Provider} {Method} {TargetId}: completed");
    }

    /// <summary>Marks the run Failed with a one-line, scrubbed error.</summary>
    public void Fail(Exception error)
    {
        string message = Scrubber.Scrub(CaptureException.OneLine(error.Message));
        lock (_lock)
        {
            _status = CustodyStatus.Failed;
            _error = message;
            _completed = DateTimeOffset.UtcNow;
        }
        Log.Warn($"{Provider} {Method} {TargetId}: failed: {message}");
    }

    /// <summary>Records every preflight check as a step, then stops the run (CaptureException) if one failed.</summary>
    public void Preflight(CapturePlan plan)
    {
        foreach (PreflightCheck check in plan.Checks)
        {
            Step("preflight", $"{check.Name}: {(check.Passed ? "ok" : "FAILED")}: {check.Reason}");
        }
        plan.ThrowIfNotReady();
    }

    /// <summary>
    /// Ends a run: marks it Completed (when <paramref name="failure"/> is null and every evidence item is verified) or
    /// Failed, writes the manifest, and returns it; a failure is rethrown as one <see cref="CaptureException"/> (a
    /// foreign exception is wrapped with <paramref name="what"/> and the manifest's path).
    /// </summary>
    public CaptureResult Finish(Exception? failure, string what)
    {
        if (failure is null)
        {
            try
            {
                Complete();
            }
            catch (CaptureException e)
            {
                failure = e;
            }
        }
        else
        {
            Fail(failure);
        }
        string manifestPath = Write();
        if (failure is not null)
        {
            throw failure as CaptureException ?? new CaptureException($"{what} failed: {failure.Message} (manifest {manifestPath})", failure);
        }
        return new CaptureResult(Build(), manifestPath);
    }

    /// <summary>The manifest as it stands.</summary>
    public CustodyManifest Build()
    {
        lock (_lock)
        {
            return new CustodyManifest
            {
                CaseId = Request.CaseId,
                Trigger = new TriggerRecord(Request.Trigger.Kind.ToString(), Request.Trigger.Id),
                Provider = Provider,
                TargetId = TargetId,
                Method = Method,
                Operator = _operator,
                Host = ThisHost(),
                Tools = [.. _tools],
                Steps = [.. _steps],
                RequestIds = [.. _requestIds],
                Resources = [.. _resources],
                Evidence = [.. _evidence],
                StartedUtc = _started,
                CompletedUtc = _completed,
                Status = _status,
                Error = _error,
            };
        }
    }

    /// <summary>
    /// Writes the manifest atomically as <c>{provider}-{target}[-{case}]-{start}.custody.json</c> in the output
    /// directory (or <paramref name="fileName"/>) and returns its path. With <see cref="CaptureRequest.Signer"/>, the
    /// written bytes are signed into <c>MANIFEST.sig</c> (every write: a failed run's manifest is signed too).
    /// </summary>
    public string Write(string? fileName = null)
    {
        CustodyManifest manifest = Build();
        string name = fileName ?? DefaultFileName(manifest);
        string path = Path.Combine(Request.OutputDirectory, name);
        manifest.WriteAtomic(path);
        if (Request.Signer is { } signer)
        {
            try
            {
                string signature = ManifestSigning.SignFile(path, signer);
                Log.Info($"manifest signed ({signer.Signer}, key {ManifestKeys.KeyId(signer.PublicKey)}): {signature}");
            }
            catch (CaptureException e)
            {
                // A remote signer (KMS) that fails must not hide the run's own outcome (Write also runs on failure
                // paths); the manifest stays unsigned, or its older signature no longer matches: verify says so.
                Log.Warn($"manifest NOT signed ({signer.Signer}): {e.Message}");
            }
        }
        return path;
    }

    /// <summary>The default manifest file name.</summary>
    public static string DefaultFileName(CustodyManifest manifest)
    {
        string target = new([.. manifest.TargetId.Select(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.' ? c : '_')]);
        string start = manifest.StartedUtc.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", System.Globalization.CultureInfo.InvariantCulture);
        string? caseId = manifest.CaseId;
        // File names are at most 255 bytes and the atomic write adds ".<32 hex>.tmp" around it: a full ARM id and a
        // long alert-derived case id together exceed that, so long parts keep their tail and a hash of the whole.
        if (manifest.Provider.Length + target.Length + (caseId?.Length ?? 0) + start.Length > MaxNameParts)
        {
            target = Shorten(target, 48);
            caseId = caseId is null ? null : Shorten(caseId, 64);
        }
        return caseId is null
            ? $"{manifest.Provider}-{target}-{start}.custody.json"
            : $"{manifest.Provider}-{target}-{caseId}-{start}.custody.json";
    }

    private const int MaxNameParts = 160;

    private static string Shorten(string part, int keep) => part.Length <= keep
        ? part
        : $"{Convert.ToHexStringLower(System.Security.Cryptography.SHA256.HashData(System.Text.Encoding.UTF8.GetBytes(part)))[..8]}-{part[^(keep - 9)..]}";

    private static HostRecord ThisHost()
    {
        Assembly assembly = Assembly.GetEntryAssembly() ?? typeof(CustodyRecorder).Assembly;
        string version = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
            ?? assembly.GetName().Version?.ToString() ?? "unknown";
        return new HostRecord(Environment.MachineName, version, RuntimeInformation.OSDescription);
    }
}
