using System.Globalization;
using System.Text;
using System.Text.Json;
using Azure;
using Azure.Core;
using Azure.Identity;
using Azure.ResourceManager;
using Azure.ResourceManager.Compute;
using Azure.ResourceManager.Compute.Models;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;
using Azure.Storage.Blobs.Specialized;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Azure;

/// <summary>
/// Azure memory capture. Run Command: preflight (VM running, OS type, VM agent ready, container reachable), stage the
/// tool in the container, issue a read-only SAS for the tool blob and a write SAS for exactly one evidence blob,
/// pass both only as protected parameters of a managed run command, poll its instance view, then stream the blob back
/// (our SHA-256 while streaming), compare with the guest's hash and size, open the copy with our parsers, and write the
/// custody manifest with every ARM and Blob request id. Hibernate (opt-in): deallocate with hibernate=true, a full
/// snapshot of the OS disk, read back through a Grant Access SAS, the hibernation image found, opened and hashed.
/// </summary>
internal sealed partial class AzureCaptureConnector : ICaptureConnector
{
    private readonly AzureCaptureOptions _options;
    private readonly CaptureRequest _request;
    private readonly CaptureLog _log;
    private readonly EvidenceOpener _opener;
    private readonly AzureArm _arm;
    private readonly AzureRequestLog _blobLog = new("blob");
    private readonly BlobClientOptions _blobOptions;
    private readonly BlobServiceClient _blobService;
    private readonly BlobContainerClient _container;
    private readonly string _account;
    private readonly string _containerName;

    public AzureCaptureConnector(AzureCaptureOptions options, CaptureRequest request, CaptureLog log, EvidenceOpener opener)
    {
        _options = options;
        _request = request;
        _log = log;
        _opener = opener;
        (_account, _containerName) = AzureTarget.ParseContainerUrl(options.ContainerUrl);
        _arm = new AzureArm(options.Credential, options.VmId.SubscriptionId!, options.Arm);
        BlobClientOptions blobOptions = options.BlobOptions ?? new BlobClientOptions();
        blobOptions.AddPolicy(_blobLog, HttpPipelinePosition.PerRetry);
        _blobOptions = blobOptions;
        Uri serviceUri = new(options.ContainerUrl.AbsoluteUri[..options.ContainerUrl.AbsoluteUri.TrimEnd('/').LastIndexOf('/')]);
        _blobService = options.StorageKey is not null
            ? new BlobServiceClient(serviceUri, options.StorageKey, blobOptions)
            : new BlobServiceClient(serviceUri, options.Credential, blobOptions);
        _container = _blobService.GetBlobContainerClient(_containerName);
    }

    private string MethodName => _options.Method == AzureCaptureMethod.Hibernate ? "hibernate-snapshot" : "runcommand-" + ToolName;

    private string ToolName => (_options.Tool ?? AzureGuestTool.Avml) == AzureGuestTool.Avml ? "avml" : "winpmem";

    /// <inheritdoc />
    public async Task<CapturePlan> PlanAsync(CancellationToken cancellationToken)
    {
        (CapturePlan plan, _, _) = await PreflightAsync(cancellationToken).ConfigureAwait(false);
        return plan;
    }

    internal async Task<(CapturePlan Plan, AzureVmFacts? Facts, AzureGuestTool Tool)> PreflightAsync(CancellationToken cancellationToken)
    {
        var plan = new CapturePlan("azure", _options.VmId.ToString(), MethodName);
        AzureVmFacts? facts = null;
        try
        {
            facts = await _arm.DescribeAsync(_options.VmId, cancellationToken).ConfigureAwait(false);
            plan.Check("vm readable", true, $"{facts.Name} in {facts.Location} (vmId {facts.VmUniqueId})");
        }
        catch (RequestFailedException e)
        {
            plan.Check("vm readable", false, Describe(e));
        }
        AzureGuestTool tool = _options.Tool ?? (facts?.OsType is "Windows" ? AzureGuestTool.WinPmem : AzureGuestTool.Avml);
        if (facts is not null)
        {
            plan.Check("os type", facts.OsType is "Linux" or "Windows"
                && (tool == AzureGuestTool.Avml) == (facts.OsType == "Linux"),
                $"{facts.OsType ?? "unknown"} ({facts.OsName ?? "no OS name in the instance view"}); tool {(tool == AzureGuestTool.Avml ? "avml" : "winpmem")}");
            if (_options.Method == AzureCaptureMethod.RunCommand)
            {
                plan.Check("power state", facts.PowerState == "running", $"PowerState/{facts.PowerState ?? "unknown"}");
                plan.Check("vm agent", string.Equals(facts.AgentStatus, "Ready", StringComparison.OrdinalIgnoreCase),
                    $"agent {facts.AgentVersion ?? "?"} status {facts.AgentStatus ?? "not reported"}");
            }
            else
            {
                plan.Check("power state", facts.PowerState == "running", $"PowerState/{facts.PowerState ?? "unknown"} (hibernation needs a running VM)");
                plan.Check("hibernation enabled", facts.HibernationEnabled,
                    facts.HibernationEnabled ? "additionalCapabilities.hibernationEnabled = true" : "additionalCapabilities.hibernationEnabled is not true on this VM");
                plan.Check("os disk", facts.OsDiskId is not null, facts.OsDiskId ?? "the VM has no managed OS disk");
            }
        }
        if (_options.Method == AzureCaptureMethod.RunCommand)
        {
            try
            {
                bool exists = (await _container.ExistsAsync(cancellationToken).ConfigureAwait(false)).Value;
                plan.Check("evidence container", exists, exists ? $"{_account}/{_containerName} exists" : $"{_account}/{_containerName} does not exist");
            }
            catch (RequestFailedException e)
            {
                plan.Check("evidence container", false, Describe(e));
            }
            if (_options.ToolFile is null)
            {
                plan.Check("tool file", !_request.PlanOnly ? false : true, "--tool-file not given (needed to stage the tool)");
            }
            else
            {
                plan.Check("tool file", File.Exists(_options.ToolFile), File.Exists(_options.ToolFile)
                    ? $"{_options.ToolFile} ({new FileInfo(_options.ToolFile).Length} bytes)" : $"{_options.ToolFile} does not exist");
            }
            plan.Step("stage tool", $"upload {ToolName} to {_account}/{_containerName}/{ToolBlobName("<sha256>")} unless present (same SHA-256)");
            plan.Step("issue SAS", $"{SasKind}: read-only for the tool blob, write (Put Block/Put Block List) for one evidence blob, expiry <= {Resilience.Describe(SasLifetime)}", mutating: false);
            plan.Step("run command", $"managed run command on {_options.VmId.Name} (timeoutInSeconds {(int)Math.Ceiling(_request.Timeouts.Command.TotalSeconds)}, SAS URLs as protected parameters): download tool into RAM, check SHA-256, stream the capture by blocks (nothing written to the guest's disks); poll the instance view up to {Resilience.Describe(PollBudget)}, then delete the run command");
            plan.Step("verify", $"stream the blob back (SHA-256 on our side), compare with the guest's hash and size, open with our parsers{(_request.Download ? ", keep the copy in " + _request.OutputDirectory : "")}", mutating: false);
            plan.Step("manifest", $"write the custody manifest in {_request.OutputDirectory}", mutating: false);
            plan.Notes.Add("Managed Run Command (v2): Azure stops the script at timeoutInSeconds; the SAS URLs go only into protectedParameters (never into the script, plain parameters, manifest or logs).");
            if (_options.StorageKey is null)
            {
                plan.Notes.Add("user delegation SAS: the identity needs Storage Blob Delegator and Storage Blob Data Contributor on the account.");
            }
        }
        else
        {
            plan.Step("hibernate", $"POST deallocate?hibernate=true on {_options.VmId.Name}; poll up to {Resilience.Describe(_request.Timeouts.Operation)}");
            plan.Step("snapshot", $"full snapshot of {facts?.OsDiskId ?? "the OS disk"} in resource group {_options.VmId.ResourceGroupName}");
            plan.Step("read back", "beginGetAccess (read SAS on the snapshot's VHD), Get Page Ranges, ranged GETs of the written pages into a local disk image; endGetAccess");
            plan.Step("verify", $"find the hibernation image (swsusp in a swap area, hiberfil.sys), copy it out into {_request.OutputDirectory}, hash it, open it with our parsers", mutating: false);
            plan.Step("manifest", $"write the custody manifest in {_request.OutputDirectory}", mutating: false);
            plan.Notes.Add("The VM stays deallocated (hibernated) afterwards. hiberfil.sys must be contiguous on its NTFS volume (no NTFS extent mapping is done).");
        }
        return (plan, facts, tool);
    }

    private string SasKind => _options.StorageKey is null ? "user delegation SAS" : "account-key service SAS";

    /// <summary>The guest needs the SAS until its upload ends: the command timeout plus a margin, capped.</summary>
    private TimeSpan SasLifetime
    {
        get
        {
            TimeSpan wanted = _request.Timeouts.Command + TimeSpan.FromMinutes(10);
            return wanted < BlobSasIssuer.MaxLifetime ? wanted : BlobSasIssuer.MaxLifetime;
        }
    }

    private static string ToolBlobName(string sha256) => $"cloudmem-tools/{sha256}";

    /// <inheritdoc />
    public async Task<CaptureResult> CaptureAsync(CancellationToken cancellationToken)
    {
        var recorder = new CustodyRecorder("azure", _options.VmId.ToString(), MethodName, _request, _log);
        try
        {
            await RecordOperatorAsync(recorder, cancellationToken).ConfigureAwait(false);
            (CapturePlan plan, AzureVmFacts? facts, AzureGuestTool tool) = await PreflightAsync(cancellationToken).ConfigureAwait(false);
            recorder.Preflight(plan);
            if (_options.Method == AzureCaptureMethod.Hibernate)
            {
                await HibernateAsync(recorder, facts!, cancellationToken).ConfigureAwait(false);
            }
            else
            {
                await RunCommandCaptureAsync(recorder, tool, cancellationToken).ConfigureAwait(false);
            }
            RecordRequestIds(recorder);
            recorder.Complete();
            return new CaptureResult(recorder.Build(), await FinalManifestAsync(recorder, cancellationToken).ConfigureAwait(false));
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            CaptureException error = e as CaptureException ?? new CaptureException(Describe(e), e);
            if (recorder.Status != CustodyStatus.Failed)
            {
                RecordRequestIds(recorder);
                recorder.Fail(error);
            }
            string path = await FinalManifestAsync(recorder, CancellationToken.None).ConfigureAwait(false);
            _log.Warn($"manifest (Failed) written to {path}");
            throw error == e ? error : new CaptureException(_log.Scrubber.Scrub(error.Message), e);
        }
    }

    /// <summary>
    /// The manifest beside the evidence in the container (every method, hibernation included) and locally; when the
    /// upload itself fails, the local manifest records that and stays the only copy (the run's own outcome is kept).
    /// </summary>
    private async Task<string> FinalManifestAsync(CustodyRecorder recorder, CancellationToken cancellationToken)
    {
        try
        {
            using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            bounded.CancelAfter(TimeSpan.FromMinutes(2));
            return await WriteManifestAsync(recorder, bounded.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is CaptureException or RequestFailedException or OperationCanceledException or IOException)
        {
            recorder.Step("manifest", $"NOT uploaded beside the evidence: {CaptureException.OneLine(e.Message)}");
            return recorder.Write();
        }
    }

    /// <summary>
    /// Writes the manifest locally (signed when a signer is set) and uploads it, with its signature, beside the
    /// evidence as <c>{case}/{vm}-{start}.custody.json</c>, on every outcome. Create-only (If-None-Match: *), so an
    /// immutable container accepts it and no manifest is overwritten: when the name is taken by an earlier attempt's
    /// manifest with other content, the next free <c>.custody-N.json</c> is used. Returns the local path.
    /// </summary>
    internal async Task<string> WriteManifestAsync(CustodyRecorder recorder, CancellationToken cancellationToken)
    {
        string baseName = PlanLayout(recorder, AzureGuestTool.Avml).BaseName;
        string path = recorder.Write();
        string signature = ManifestSigning.SignaturePath(path);
        for (int n = 1; n <= 9; n++)
        {
            string name = n == 1 ? $"{baseName}.custody.json" : $"{baseName}.custody-{n}.json";
            if (await UploadOnceAsync(name, path, cancellationToken).ConfigureAwait(false))
            {
                if (File.Exists(signature))
                {
                    await UploadOnceAsync(name + ".sig", signature, cancellationToken).ConfigureAwait(false);
                }
                _log.Info($"manifest ({recorder.Status}) uploaded beside the evidence as {_containerName}/{name}");
                return path;
            }
        }
        throw new CaptureException($"{_containerName}/{baseName}.custody*.json: nine manifests with other contents already exist; not uploaded");
    }

    // True when the blob now holds exactly this file (uploaded now, or already there with the same SHA-256).
    private async Task<bool> UploadOnceAsync(string blobName, string file, CancellationToken cancellationToken)
    {
        BlobClient blob = _container.GetBlobClient(blobName);
        try
        {
            await using FileStream content = File.OpenRead(file);
            await blob.UploadAsync(content, new BlobUploadOptions
            {
                Conditions = new BlobRequestConditions { IfNoneMatch = ETag.All },
                HttpHeaders = new BlobHttpHeaders { ContentType = "application/json" },
            }, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (RequestFailedException e) when (e.Status == 409 || e.ErrorCode == BlobErrorCode.BlobAlreadyExists)
        {
            (string stored, _) = await HashBlobAsync(blob, null, cancellationToken).ConfigureAwait(false);
            (string ours, _) = await Sha256Sink.HashFileAsync(file, cancellationToken).ConfigureAwait(false);
            return stored == ours;
        }
        catch (RequestFailedException e)
        {
            throw new CaptureException($"manifest upload to {_containerName}/{blobName}: {Describe(e)}", e);
        }
    }

    /// <summary>
    /// Version id, ETag and the content MD5 the Blob service returned for the evidence blob (the service keeps no
    /// whole-blob CRC64 in its properties: x-ms-content-crc64 comes only with individual writes and ranged reads).
    /// </summary>
    internal static StoredObjectRecord StoredObject(BlobProperties properties)
    {
        Dictionary<string, string>? checksums = properties.ContentHash is { Length: > 0 } md5
            ? new() { ["content-md5"] = Convert.ToBase64String(md5) }
            : null;
        return new StoredObjectRecord(string.IsNullOrEmpty(properties.VersionId) ? null : properties.VersionId, properties.ETag.ToString(), checksums);
    }

    private static async Task<(string Sha256, long Size)> HashBlobAsync(BlobClient blob, string? copyPath, CancellationToken cancellationToken)
    {
        BlobDownloadStreamingResult download = (await blob.DownloadStreamingAsync(cancellationToken: cancellationToken).ConfigureAwait(false)).Value;
        await using Stream content = download.Content;
        await using var hashing = new HashingStream(content, leaveOpen: true);
        if (copyPath is null)
        {
            await Sha256Sink.CopyAsync(hashing, Stream.Null, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            await using var file = new FileStream(copyPath, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.Asynchronous);
            await Sha256Sink.CopyAsync(hashing, file, cancellationToken).ConfigureAwait(false);
            await file.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
        return (hashing.Sha256Hex, hashing.BytesHashed);
    }

    internal async Task RecordOperatorAsync(CustodyRecorder recorder, CancellationToken cancellationToken)
    {
        string audience = (_options.Arm.Audience ?? ArmEnvironment.AzurePublicCloud.Audience).TrimEnd('/');
        try
        {
            AccessToken token = await _options.Credential.GetTokenAsync(new TokenRequestContext([audience + "/.default"]), cancellationToken).ConfigureAwait(false);
            _log.Scrubber.Register(token.Token);
            (string identity, string source) = IdentityFromToken(token.Token);
            recorder.Operator(identity, source);
        }
        catch (Exception e) when (e is AuthenticationFailedException or CredentialUnavailableException)
        {
            throw new CaptureException($"no Azure credential: {CaptureException.OneLine(e.Message)}");
        }
    }

    /// <summary>Who the token says we are (claims read without checking the signature: the token came from our own credential).</summary>
    internal static (string Identity, string Source) IdentityFromToken(string token)
    {
        string[] parts = token.Split('.');
        if (parts.Length < 2)
        {
            return ("unknown", "access token is not a JWT");
        }
        try
        {
            string payload = parts[1].Replace('-', '+').Replace('_', '/');
            payload = payload.PadRight(payload.Length + ((4 - (payload.Length % 4)) % 4), '=');
            using JsonDocument claims = JsonDocument.Parse(Convert.FromBase64String(payload));
            string? Claim(string name) => claims.RootElement.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
            string? oid = Claim("oid");
            string? who = Claim("upn") ?? Claim("unique_name") ?? Claim("appid") ?? Claim("azp");
            string identity = who is null ? $"oid {oid ?? "?"}" : $"{who} (oid {oid ?? "?"})";
            return (identity, $"ARM access token claims (tenant {Claim("tid") ?? "?"})");
        }
        catch (Exception e) when (e is FormatException or JsonException)
        {
            return ("unknown", "access token claims unreadable");
        }
    }

    private readonly HashSet<AzureRequestRecord> _recorded = [];

    /// <summary>Adds the request ids not yet recorded (a durable step records after every save).</summary>
    internal void RecordRequestIds(CustodyRecorder recorder)
    {
        foreach (AzureRequestRecord record in _arm.Log.Records.Concat(_blobLog.Records).OrderBy(r => r.Time))
        {
            if (!_recorded.Add(record))
            {
                continue;
            }
            string operation = $"{record.Operation} -> {record.Status}";
            recorder.RequestId(record.Service, operation, record.RequestId);
            if (record.CorrelationId is not null && record.CorrelationId != record.RequestId)
            {
                recorder.RequestId(record.Service + "-correlation", operation, record.CorrelationId);
            }
        }
    }

    private static string Excerpt(string text)
    {
        string flat = text.ReplaceLineEndings(" ").Trim();
        return flat.Length <= 400 ? flat : flat[..400] + "...";
    }

    internal static string Describe(Exception e) => e is RequestFailedException r
        ? $"{r.Status} {r.ErrorCode ?? ""}: {FirstLine(r.Message)}".Trim()
        : CaptureException.OneLine(e.Message);

    private static string FirstLine(string text)
    {
        int end = text.IndexOfAny(['\r', '\n']);
        return end < 0 ? text : text[..end];
    }
}
