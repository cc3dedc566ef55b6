using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Azure;
using Azure.ResourceManager.Compute.Models;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Azure;

/// <summary>
/// The managed Run Command (v2) capture: stage the tool, issue two one-blob SAS, PUT the run command with the SAS only
/// in protectedParameters, poll its instance view (executionState, exitCode, output, error) within the same budget as
/// its timeoutInSeconds plus <see cref="AzureCaptureOptions.StatusMargin"/>, verify the blob, and delete the run command.
/// </summary>
internal sealed partial class AzureCaptureConnector
{
    /// <summary>
    /// The whole poll budget: the script's timeoutInSeconds (the capture's command timeout: Azure stops the script
    /// then) plus <see cref="AzureCaptureOptions.StatusMargin"/> for Azure to report TimedOut. v1 stopped every script
    /// at 90 minutes whatever we polled; v2 runs exactly as long as we poll.
    /// </summary>
    internal TimeSpan PollBudget => _request.Timeouts.Command + _options.StatusMargin;

    private async Task RunCommandCaptureAsync(CustodyRecorder recorder, AzureGuestTool tool, CancellationToken cancellationToken)
    {
        AzureRunCommandState state = PlanLayout(recorder, tool);
        static Task NoSave(AzureRunCommandState _, CancellationToken __) => Task.CompletedTask;
        try
        {
            await StartRunCommandAsync(recorder, state, NoSave, cancellationToken).ConfigureAwait(false);
            AzureOperationStatus done = await Resilience.PollUntilAsync(
                $"Run Command {state.RunCommandName} on {_options.VmId.Name}",
                async token =>
                {
                    AzureOperationStatus status = await RunCommandStatusAsync(state, token).ConfigureAwait(false);
                    return status.Done ? PollState<AzureOperationStatus>.Finished(status.Status, status) : PollState<AzureOperationStatus>.Pending(status.Status);
                },
                _request.Timeouts.PollInterval, PollBudget, cancellationToken).ConfigureAwait(false);
            await VerifyAsync(recorder, state, done.Output ?? "", cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            await DeleteRunCommandAsync(recorder, state).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// Where this run's blobs go: <c>{case}/{vm}-{start}</c> (the recorder's start time, so a resumed run keeps it)
    /// plus the tool's extension for the evidence and <c>.custody.json</c> for the manifest; the run command's name
    /// is derived from it, so a resumed worker finds the same run command.
    /// </summary>
    internal AzureRunCommandState PlanLayout(CustodyRecorder recorder, AzureGuestTool tool)
    {
        string stamp = recorder.Build().StartedUtc.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        string baseName = $"{_request.CaseId ?? "nocase"}/{_options.VmId.Name}-{stamp}";
        string name = "cloudmem-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(baseName)))[..16];
        return new AzureRunCommandState { Tool = tool, BaseName = baseName, RunCommandName = name };
    }

    /// <summary>
    /// Stages the tool, issues the two SAS and PUTs the managed run command, saving the state before the request
    /// (RequestedUtc) and after ARM accepted it, so a restarted worker polls the same run command and never sends it
    /// twice. A state with RequestedUtc but not Accepted (the worker died during the request) is resolved by a GET of
    /// the run command: when it exists it is polled; when it does not, nothing is sent again (whether the request is
    /// still on its way is unknown, and running the tool twice would overwrite memory the first run changed).
    /// </summary>
    internal async Task StartRunCommandAsync(CustodyRecorder recorder, AzureRunCommandState state, Func<AzureRunCommandState, CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        if (state.Accepted)
        {
            recorder.Step("run command", $"{state.RunCommandName} already accepted at {state.RequestedUtc:O}: not sent again, polling it");
            return;
        }
        if (state.RequestedUtc is { } requested)
        {
            if ((await _arm.GetManagedRunCommandAsync(_options.VmId, state.RunCommandName, cancellationToken).ConfigureAwait(false)).Exists)
            {
                state.Accepted = true;
                recorder.Step("run command", $"{state.RunCommandName} (requested at {requested:O}) exists on the VM: not sent again, polling it");
                await save(state, cancellationToken).ConfigureAwait(false);
                return;
            }
            throw new CaptureException($"Run Command {state.RunCommandName} was requested at {requested:O} but does not exist on the VM: not sent again; check the VM's run commands");
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
        ScopedSas uploadSas = await issuer.BlockUploadAsync(_containerName, evidenceName, SasLifetime, cancellationToken).ConfigureAwait(false);
        foreach (ScopedSas sas in new[] { toolSas, uploadSas })
        {
            _log.Scrubber.RegisterUrl(sas.Uri.AbsoluteUri);
            _log.Scrubber.Register(sas.Signature);
            _log.Scrubber.Register(Uri.EscapeDataString(sas.Signature));
            recorder.Step("issue SAS", sas.ToString());
        }

        // 3. The managed run command: the script holds no secret, the SAS URLs are protected parameters.
        string script = AzureGuestScript.Build(tool, toolSha, $"case {_request.CaseId ?? "none"}, blob {evidenceName}");
        var secrets = new Dictionary<string, string>
        {
            [AzureGuestScript.ToolUrlParameter] = AzureGuestScript.ParameterValue(toolSas.Uri),
            [AzureGuestScript.UploadUrlParameter] = AzureGuestScript.ParameterValue(uploadSas.Uri),
        };
        AzureVmFacts facts = await _arm.DescribeAsync(_options.VmId, cancellationToken).ConfigureAwait(false);
        state.RequestedUtc = DateTimeOffset.UtcNow;
        await save(state, cancellationToken).ConfigureAwait(false);
        await _arm.StartManagedRunCommandAsync(_options.VmId, state.RunCommandName, facts.Location, script, secrets, _request.Timeouts.Command, cancellationToken).ConfigureAwait(false);
        state.Accepted = true;
        recorder.Step("run command", $"managed run command {state.RunCommandName} accepted on {_options.VmId.Name} (timeoutInSeconds {(int)Math.Ceiling(_request.Timeouts.Command.TotalSeconds)}, asyncExecution, SAS in protectedParameters; output to {_containerName}/{evidenceName})");
        await save(state, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>One GET of the run command's instance view: done once executionState is final; anything but Succeeded with exit code 0 is an error.</summary>
    internal async Task<AzureOperationStatus> RunCommandStatusAsync(AzureRunCommandState state, CancellationToken cancellationToken)
    {
        if (!state.Accepted)
        {
            throw new CaptureException("Run Command has not been started (no accepted run command saved)");
        }
        (bool exists, VirtualMachineRunCommandInstanceView? view) = await _arm.GetManagedRunCommandAsync(_options.VmId, state.RunCommandName, cancellationToken).ConfigureAwait(false);
        if (!exists)
        {
            throw new CaptureException($"run command {state.RunCommandName} no longer exists on {_options.VmId.Name}");
        }
        if (view is null)
        {
            return new AzureOperationStatus(false, "Pending (no instance view yet)", null, null);
        }
        string execution = view.ExecutionState?.ToString() ?? "Unknown";
        bool done = execution is "Succeeded" or "Failed" or "TimedOut" or "Canceled";
        string output = view.Output ?? "";
        if (done && (execution != "Succeeded" || view.ExitCode is not (null or 0)))
        {
            string why = AzureGuestScript.ParseOutput(output).Error
                ?? Excerpt(string.Join(" ", new[] { view.Error, view.ExecutionMessage }.Where(t => !string.IsNullOrWhiteSpace(t))));
            throw new CaptureException(_log.Scrubber.Scrub($"Run Command {state.RunCommandName} on {_options.VmId.Name} ended {execution} (exit {view.ExitCode?.ToString(CultureInfo.InvariantCulture) ?? "?"}): {(why.Length > 0 ? why : "no error text")}"));
        }
        return new AzureOperationStatus(done, execution, output, view.Error);
    }

    /// <summary>DELETE the run command once it is over (best effort, recorded): its stored protected parameters go with it.</summary>
    internal async Task DeleteRunCommandAsync(CustodyRecorder recorder, AzureRunCommandState? state)
    {
        if (state is not { Accepted: true } || state.Deleted)
        {
            return;
        }
        using var cleanup = new CancellationTokenSource(TimeSpan.FromMinutes(1));
        try
        {
            await _arm.DeleteManagedRunCommandAsync(_options.VmId, state.RunCommandName, cleanup.Token).ConfigureAwait(false);
            state.Deleted = true;
            recorder.Step("delete run command", $"{state.RunCommandName} deleted from {_options.VmId.Name}");
        }
        catch (Exception e) when (e is RequestFailedException or OperationCanceledException)
        {
            recorder.Step("delete run command", $"{state.RunCommandName}: FAILED: {Describe(e)}");
        }
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
            throw new CaptureException($"the guest script did not report CLOUDMEM_RESULT (bytes, SHA-256) (output: {Excerpt(output)})");
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
}
