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
/// tool in the container, issue a read-only SAS for the tool blob and a create-only SAS for exactly one evidence blob,
/// send both only inside the Run Command script, poll the operation under our timeout, then stream the blob back
/// (our SHA-256 while streaming), compare with the guest's hash and size, open the copy with our parsers, and write the
/// custody manifest with every ARM and Blob request id. Hibernate (opt-in): deallocate with hibernate=true and a full
/// snapshot of the OS disk.
/// </summary>
internal sealed partial class AzureCaptureConnector : ICaptureConnector
{
    private readonly AzureCaptureOptions _options;
    private readonly CaptureRequest _request;
    private readonly CaptureLog _log;
    private readonly EvidenceOpener _opener;
    private readonly AzureArm _arm;
    private readonly AzureRequestLog _blobLog = new("blob");
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
            plan.Step("issue SAS", $"{SasKind}: read-only for the tool blob, create-only for one evidence blob, expiry <= {Resilience.Describe(SasLifetime)}", mutating: false);
            plan.Step("run command", $"{AzureGuestScript.CommandId(tool)} on {_options.VmId.Name}: download tool, check SHA-256, capture, upload; poll up to {Resilience.Describe(_request.Timeouts.Command)}");
            plan.Step("verify", $"stream the blob back (SHA-256 on our side), compare with the guest's hash and size, open with our parsers{(_request.Download ? ", keep the copy in " + _request.OutputDirectory : "")}", mutating: false);
            plan.Step("manifest", $"write the custody manifest in {_request.OutputDirectory}", mutating: false);
            plan.Notes.Add("Run Command (action) runs at most 90 minutes on Azure; the SAS signature goes only into the script (never into parameters, manifest or logs).");
            if (_options.StorageKey is null)
            {
                plan.Notes.Add("user delegation SAS: the identity needs Storage Blob Delegator and Storage Blob Data Contributor on the account.");
            }
        }
        else
        {
            plan.Step("hibernate", $"POST deallocate?hibernate=true on {_options.VmId.Name}; poll up to {Resilience.Describe(_request.Timeouts.Operation)}");
            plan.Step("snapshot", $"full snapshot of {facts?.OsDiskId ?? "the OS disk"} in resource group {_options.VmId.ResourceGroupName}");
            plan.Step("manifest", $"write the custody manifest in {_request.OutputDirectory}", mutating: false);
            plan.Notes.Add("The VM stays deallocated (hibernated) afterwards. The snapshot holds the hibernation file (hiberfil.sys / swap); exporting it and extracting the file is not automated (cloudmem info opens both formats).");
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

    private async Task RunCommandCaptureAsync(CustodyRecorder recorder, AzureGuestTool tool, CancellationToken cancellationToken)
    {
        AzureRunCommandState state = PlanLayout(recorder, tool);
        static Task NoSave(AzureRunCommandState _, CancellationToken __) => Task.CompletedTask;
        await StartRunCommandAsync(recorder, state, NoSave, cancellationToken).ConfigureAwait(false);
        string output = await Resilience.PollUntilAsync(
            $"Run Command {AzureGuestScript.CommandId(tool)} on {_options.VmId.Name}",
            async token =>
            {
                AzureOperationStatus status = await RunCommandStatusAsync(state, token).ConfigureAwait(false);
                return status.Done
                    ? PollState<string>.Finished(status.Status, status.Output ?? "")
                    : PollState<string>.Pending(status.Status);
            },
            _request.Timeouts.PollInterval, _request.Timeouts.Command, cancellationToken).ConfigureAwait(false);
        await VerifyAsync(recorder, state, output, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Where this run's blobs go: <c>{case}/{vm}-{start}</c> (the recorder's start time, so a resumed run keeps it)
    /// plus the tool's extension for the evidence and <c>.custody.json</c> for the manifest.
    /// </summary>
    internal AzureRunCommandState PlanLayout(CustodyRecorder recorder, AzureGuestTool tool)
    {
        string stamp = recorder.Build().StartedUtc.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        return new AzureRunCommandState { Tool = tool, BaseName = $"{_request.CaseId ?? "nocase"}/{_options.VmId.Name}-{stamp}" };
    }

    /// <summary>
    /// Stages the tool, issues the two SAS and sends Run Command, saving the state before the request (RequestedUtc)
    /// and after it (the operation's URL), so a restarted worker polls the same operation and never sends the command
    /// twice: a state with RequestedUtc but no operation (the worker died during the request) is refused, because
    /// whether the guest ran the tool is unknown and running it again would overwrite memory the first run changed.
    /// </summary>
    internal async Task StartRunCommandAsync(CustodyRecorder recorder, AzureRunCommandState state, Func<AzureRunCommandState, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        if (state.OperationUrl is not null)
        {
            recorder.Step("run command", $"already sent at {state.RequestedUtc:O} (operation saved): not sent again, polling it");
            return;
        }
        if (state.RequestedUtc is { } requested)
        {
            throw new CaptureException($"Run Command was requested at {requested:O} but its operation was not saved (the worker stopped during the request): not sent again; check the VM's run command history");
        }
        AzureGuestTool tool = state.Tool;

        // 1. Stage the tool (content-addressed: the blob name is its SHA-256).
        (string toolSha, long toolSize) = await Sha256Sink.HashFileAsync(_options.ToolFile!, cancellationToken).ConfigureAwait(false);
        BlobClient toolBlob = _container.GetBlobClient(ToolBlobName(toolSha));
        try
        {
            await using FileStream file = File.OpenRead(_options.ToolFile!);
            await toolBlob.UploadAsync(file, new BlobUploadOptions { Conditions = new BlobRequestConditions { IfNoneMatch = ETag.All } }, cancellationToken).ConfigureAwait(false);
            recorder.Step("stage tool", $"{ToolName} ({toolSize} bytes, sha256 {toolSha}) uploaded to {toolBlob.Name}");
        }
        catch (RequestFailedException e) when (e.Status == 409 || e.ErrorCode == BlobErrorCode.BlobAlreadyExists)
        {
            (string stagedSha, _) = await HashBlobAsync(toolBlob, null, cancellationToken).ConfigureAwait(false);
            if (stagedSha != toolSha)
            {
                throw new CaptureException($"staged tool {toolBlob.Name} has SHA-256 {stagedSha}, not {toolSha}: refusing to use it");
            }
            recorder.Step("stage tool", $"{ToolName} already staged as {toolBlob.Name} (sha256 {toolSha} checked)");
        }
        recorder.Tool(ToolName, _options.ToolVersion, toolSha, toolBlob.Uri.AbsoluteUri);

        // 2. One evidence blob name, two scoped SAS.
        string evidenceName = state.EvidenceName;
        var issuer = new BlobSasIssuer(_blobService, _options.StorageKey);
        ScopedSas toolSas = await issuer.ReadOnlyAsync(_containerName, toolBlob.Name, SasLifetime, cancellationToken).ConfigureAwait(false);
        ScopedSas uploadSas = await issuer.CreateOnlyAsync(_containerName, evidenceName, SasLifetime, cancellationToken).ConfigureAwait(false);
        foreach (ScopedSas sas in new[] { toolSas, uploadSas })
        {
            _log.Scrubber.RegisterUrl(sas.Uri.AbsoluteUri);
            _log.Scrubber.Register(sas.Signature);
            _log.Scrubber.Register(Uri.EscapeDataString(sas.Signature));
            recorder.Step("issue SAS", sas.ToString());
        }

        // 3. Run Command with the script (the SAS URLs are only in there).
        IReadOnlyList<string> script = AzureGuestScript.Build(tool, toolSas.Uri, toolSha, uploadSas.Uri,
            $"case {_request.CaseId ?? "none"}, blob {evidenceName}");
        string commandId = AzureGuestScript.CommandId(tool);
        state.RequestedUtc = DateTimeOffset.UtcNow;
        await save(state, cancellationToken).ConfigureAwait(false);
        ArmOperation<VirtualMachineRunCommandResult> operation =
            await _arm.StartRunCommandAsync(_options.VmId, commandId, script, cancellationToken).ConfigureAwait(false);
        Response accepted = operation.GetRawResponse();
        state.OperationUrl = accepted.Headers.TryGetValue("Azure-AsyncOperation", out string? asyncOperation) ? asyncOperation
            : accepted.Headers.TryGetValue("Location", out string? location) ? location
            : throw new CaptureException($"runCommand on {_options.VmId.Name} answered HTTP {accepted.Status} without Azure-AsyncOperation or Location: cannot follow it");
        state.ResultUrl = accepted.Headers.TryGetValue("Location", out string? result) ? result : null;
        recorder.Step("run command", $"{commandId} started on {_options.VmId.Name} ({script.Count} script lines; output to {_containerName}/{evidenceName})");
        await save(state, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>One status read of the saved Run Command operation (GET on its Azure-AsyncOperation URL, with our ARM credential).</summary>
    internal async Task<AzureOperationStatus> RunCommandStatusAsync(AzureRunCommandState state, CancellationToken cancellationToken)
    {
        Uri url = new(state.OperationUrl ?? throw new CaptureException("Run Command has not been started (no operation saved)"));
        AzureOperationStatus status = await _arm.GetOperationAsync(url, state.ResultUrl is null ? null : new Uri(state.ResultUrl), cancellationToken).ConfigureAwait(false);
        if (status.Done && status.Status != "Succeeded")
        {
            throw new CaptureException($"Run Command on {_options.VmId.Name} ended {status.Status}: {status.Error ?? "no error text"}");
        }
        return status;
    }

    /// <summary>Reads the guest's report, streams the blob back (our SHA-256), compares, opens it with our parsers and records the evidence.</summary>
    internal async Task VerifyAsync(CustodyRecorder recorder, AzureRunCommandState state, string output, CancellationToken cancellationToken)
    {
        GuestReport report = AzureGuestScript.ParseOutput(output);
        recorder.Step("run command", $"finished: {Excerpt(output)}");
        if (report.Error is not null)
        {
            throw new CaptureException($"the guest script failed: {report.Error} (output: {Excerpt(output)})");
        }
        if (report.Sha256 is null || report.SizeBytes is null)
        {
            throw new CaptureException($"the guest script did not report CLOUDMEM_SHA256/CLOUDMEM_SIZE (output: {Excerpt(output)})");
        }
        string evidenceName = state.EvidenceName;

        // 4. Verify: read the blob back, hash on our side, compare, open with our parsers.
        BlobClient evidence = _container.GetBlobClient(evidenceName);
        BlobProperties properties;
        try
        {
            properties = (await evidence.GetPropertiesAsync(cancellationToken: cancellationToken).ConfigureAwait(false)).Value;
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            throw new CaptureException($"the guest reported success but {_containerName}/{evidenceName} does not exist");
        }
        recorder.Resource("blob", SecretScrubber.WithoutQuery(evidence.Uri.AbsoluteUri), $"{properties.ContentLength} bytes, etag {properties.ETag}");
        Directory.CreateDirectory(_request.OutputDirectory);
        string localName = Path.GetFileName(evidenceName);
        string finalPath = Path.GetFullPath(Path.Combine(_request.OutputDirectory, localName));
        string partial = Path.Combine(_request.OutputDirectory, $".{localName}.{Guid.NewGuid():N}.partial");
        string ourSha;
        long ourSize;
        try
        {
            (ourSha, ourSize) = await HashBlobAsync(evidence, partial, cancellationToken).ConfigureAwait(false);
            recorder.Step("read back", $"{evidenceName}: {ourSize} bytes streamed, sha256 {ourSha} (computed while streaming)");
            string? openedAs = null, problem = null;
            try
            {
                openedAs = _opener(partial);
            }
            catch (Exception e) when (e is IOException or InvalidDataException or UnauthorizedAccessException or NotSupportedException)
            {
                problem = CaptureException.OneLine(e.Message);
            }
            string? localPath = null;
            if (_request.Download)
            {
                if (File.Exists(finalPath))
                {
                    throw new CaptureException($"{finalPath} exists: refusing to overwrite evidence");
                }
                File.Move(partial, finalPath);
                localPath = finalPath;
            }
            recorder.Evidence(evidenceName, evidence.Uri.AbsoluteUri, localPath, ourSize, report.SizeBytes.Value,
                ourSha, report.Sha256, openedAs, problem, StoredObject(properties));
            if (properties.ContentLength != ourSize)
            {
                throw new CaptureException($"blob {evidenceName} reports {properties.ContentLength} bytes but {ourSize} were read");
            }
        }
        finally
        {
            if (File.Exists(partial))
            {
                File.Delete(partial);
                if (!_request.Download)
                {
                    recorder.Step("read back", "temporary local copy (opened with our parsers) deleted; --download keeps it");
                }
            }
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

    private async Task HibernateAsync(CustodyRecorder recorder, AzureVmFacts facts, CancellationToken cancellationToken)
    {
        ArmOperation hibernate = await _arm.StartHibernateAsync(_options.VmId, cancellationToken).ConfigureAwait(false);
        recorder.Step("hibernate", $"POST deallocate?hibernate=true on {facts.Name} accepted");
        await Resilience.PollUntilAsync(
            $"hibernation of {facts.Name}",
            async token =>
            {
                await hibernate.UpdateStatusAsync(token).ConfigureAwait(false);
                return hibernate.HasCompleted ? PollState<bool>.Finished("Succeeded", true) : PollState<bool>.Pending(OperationState(hibernate.GetRawResponse()));
            },
            _request.Timeouts.PollInterval, _request.Timeouts.Operation, cancellationToken).ConfigureAwait(false);
        AzureVmFacts after = await _arm.DescribeAsync(_options.VmId, cancellationToken).ConfigureAwait(false);
        recorder.Step("hibernate", $"{facts.Name} is now PowerState/{after.PowerState ?? "unknown"}");
        string stamp = DateTimeOffset.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        string name = $"cloudmem-{(_request.CaseId ?? "nocase")}-{facts.Name}-{stamp}";
        if (name.Length > 80)
        {
            name = name[..80];
        }
        var tags = new Dictionary<string, string> { ["cloudmem-source-vm"] = facts.Name, ["cloudmem-trigger"] = _request.Trigger.ToString() };
        if (_request.CaseId is not null)
        {
            tags["cloudmem-case"] = _request.CaseId;
        }
        ArmOperation<SnapshotResource> snapshot = await _arm.StartSnapshotAsync(_options.VmId, name, facts.OsDiskId!, facts.Location, tags, cancellationToken).ConfigureAwait(false);
        recorder.Step("snapshot", $"PUT snapshot {name} of {facts.OsDiskId} accepted");
        SnapshotResource done = await Resilience.PollUntilAsync(
            $"snapshot {name}",
            async token =>
            {
                await snapshot.UpdateStatusAsync(token).ConfigureAwait(false);
                return snapshot.HasCompleted ? PollState<SnapshotResource>.Finished("Succeeded", snapshot.Value) : PollState<SnapshotResource>.Pending(OperationState(snapshot.GetRawResponse()));
            },
            _request.Timeouts.PollInterval, _request.Timeouts.Operation, cancellationToken).ConfigureAwait(false);
        recorder.Resource("snapshot", done.Id.ToString(), $"full copy of {facts.OsDiskId} (unique id {done.Data.UniqueId}, state {done.Data.ProvisioningState})");
        recorder.Step("snapshot", $"{done.Id} created; the hibernation file inside it is not extracted by this command");
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

    private static string OperationState(Response response)
    {
        try
        {
            using JsonDocument body = JsonDocument.Parse(response.Content.ToMemory());
            if (body.RootElement.ValueKind == JsonValueKind.Object && body.RootElement.TryGetProperty("status", out JsonElement status))
            {
                return status.GetString() ?? $"HTTP {response.Status}";
            }
        }
        catch (JsonException)
        {
        }
        return $"HTTP {response.Status}";
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
