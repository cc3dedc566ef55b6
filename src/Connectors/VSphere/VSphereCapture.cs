using System.Globalization;
using System.Net;
using CloudMem.Connectors.Core;
using Refit;

namespace CloudMem.Connectors.VSphere;

/// <summary>Which vSphere wire protocol to use.</summary>
public enum VSphereTransport
{
    /// <summary>VI/JSON when the server answers it (vCenter 8.0U1+), SOAP otherwise.</summary>
    Auto,
    /// <summary>VI/JSON only.</summary>
    ViJson,
    /// <summary>SOAP vim25 (/sdk).</summary>
    Soap,
}

/// <summary>How the downloaded files are checked against the datastore.</summary>
public enum VSphereVerify
{
    /// <summary>
    /// Read every file a second time from the datastore (hash only, nothing stored) and compare with the SHA-256 computed
    /// while downloading: the datastore has no hash API, so this is the only check against the stored file itself.
    /// </summary>
    Remote,
    /// <summary>Re-read the local copy and compare (cheaper; detects local corruption, not a bad transfer).</summary>
    Local,
}

/// <summary>Options of a vSphere memory capture (credentials are passed separately and never stored here).</summary>
public sealed record VSphereCaptureOptions
{
    /// <summary>vCenter or ESXi URL (https://vc).</summary>
    public required Uri Server { get; init; }

    /// <summary>VM moref (vm-42), inventory path or name.</summary>
    public required string Vm { get; init; }

    /// <summary>Datacenter for a VM given by name.</summary>
    public string? Datacenter { get; init; }

    /// <summary>SHA-256 of the server certificate to accept when it does not validate.</summary>
    public string? PinnedThumbprint { get; init; }

    /// <summary>Leave the snapshot on the server.</summary>
    public bool KeepSnapshot { get; init; }

    /// <summary>Protocol.</summary>
    public VSphereTransport Transport { get; init; } = VSphereTransport.Auto;

    /// <summary>VI/JSON release in URLs (default 8.0.1.0).</summary>
    public string? ApiRelease { get; init; }

    /// <summary>Verification of the copies.</summary>
    public VSphereVerify Verify { get; init; } = VSphereVerify.Remote;

    /// <summary>How long the snapshot removal may take (its own limit, also after a failure or Ctrl+C).</summary>
    public TimeSpan CleanupTimeout { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Download retries and buffer.</summary>
    public DownloadPolicy Download { get; init; } = new();
}

/// <summary>
/// Memory capture of a vSphere VM: log in, resolve the VM, CreateSnapshot_Task (memory=true, quiesce=false), wait for the
/// task, find the snapshot's .vmsn and .vmem in the VM's layoutEx, download both through the datastore /folder service
/// (Range resume, SHA-256 while streaming), verify (a second, hash-only read of the datastore files, or the local copy;
/// sizes against layoutEx; the files open with our parsers), then remove the snapshot. The snapshot is removed on every
/// path (success after verification, and every failure), under its own timeout, unless <c>KeepSnapshot</c>; each step
/// goes to the custody manifest.
/// </summary>
public sealed class VSphereCapture : ICaptureConnector
{
    /// <summary>Method name in the manifest.</summary>
    public const string MethodName = "snapshot-memory";

    private readonly VSphereCaptureOptions _options;
    private readonly NetworkCredential _credential;
    private readonly CaptureRequest _request;
    private readonly CaptureLog _log;
    private readonly EvidenceOpener _opener;
    private readonly Func<HttpMessageHandler> _handlerFactory;
    private readonly IProgress<TransferProgress>? _progress;

    /// <summary>
    /// Creates the capture. <paramref name="handlerFactory"/> makes the HTTP handlers (default: TLS validated or pinned);
    /// the password is registered with the log's scrubber.
    /// </summary>
    public VSphereCapture(VSphereCaptureOptions options, NetworkCredential credential, CaptureRequest request, CaptureLog log,
        EvidenceOpener opener, Func<HttpMessageHandler>? handlerFactory = null, IProgress<TransferProgress>? progress = null)
    {
        _options = options;
        _credential = credential;
        _request = request;
        _log = log;
        _opener = opener;
        _progress = progress;
        _handlerFactory = handlerFactory ?? (() => VSphereHttp.CreateHandler(options.PinnedThumbprint));
        log.Scrubber.Register(credential.Password);
    }

    /// <inheritdoc />
    public async Task<CapturePlan> PlanAsync(CancellationToken cancellationToken)
    {
        var plan = new CapturePlan("vsphere", _options.Vm, MethodName);
        plan.Check("server", true, _options.Server.GetLeftPart(UriPartial.Authority) + (_options.PinnedThumbprint is null ? " (TLS validated)" : " (certificate pinned by SHA-256)"));
        await using IVimClient? client = await TryConnectForPlanAsync(plan, cancellationToken).ConfigureAwait(false);
        if (client is not null)
        {
            try
            {
                string user = await client.LoginAsync(_credential.UserName, _credential.Password, cancellationToken).ConfigureAwait(false);
                plan.Check("login", true, $"as {user}");
                MoRef vm = await client.FindVmAsync(_options.Vm, _options.Datacenter, cancellationToken).ConfigureAwait(false);
                VmSummary summary = await client.GetVmAsync(vm, cancellationToken).ConfigureAwait(false);
                plan.Check("vm", true, $"{summary.Name} ({vm.Value}) in datacenter {summary.DatacenterName}, {summary.SnapshotCount} snapshot(s)");
                plan.Check("power state", summary.PowerState == "poweredOn", summary.PowerState == "poweredOn"
                    ? "poweredOn" : $"{summary.PowerState}: a memory snapshot needs a running VM");
            }
            catch (CaptureException e)
            {
                plan.Check("vm", false, e.Message);
            }
            finally
            {
                await SafeLogoutAsync(client).ConfigureAwait(false);
            }
        }
        plan.Step("CreateSnapshot_Task", "memory=true quiesce=false, name cloudmem-<case>-<time>");
        plan.Step("wait for the task", $"poll Task.info every {Resilience.Describe(_request.Timeouts.PollInterval)}, at most {Resilience.Describe(_request.Timeouts.Operation)}", mutating: false);
        plan.Step("locate files", "layoutEx.snapshot[].dataKey (.vmsn) and memoryKey (.vmem; the .vmsn's sibling when memoryKey is -1)", mutating: false);
        plan.Step("download", $"GET /folder/<path>?dcPath=..&dsName=.. into {_request.OutputDirectory}, Range resume, SHA-256 while streaming", mutating: false);
        plan.Step("verify", _options.Verify == VSphereVerify.Remote ? "read the datastore files again (hash only) and compare; sizes against layoutEx; open .vmsn and .vmem with our parsers" : "re-hash the local copies; open with our parsers", mutating: false);
        plan.Step("RemoveSnapshot_Task", _options.KeepSnapshot ? "skipped (--keep-snapshot)" : "after verification, and on every failure path (own timeout " + Resilience.Describe(_options.CleanupTimeout) + ")");
        return plan;
    }

    /// <inheritdoc />
    public async Task<CaptureResult> CaptureAsync(CancellationToken cancellationToken)
    {
        var recorder = new CustodyRecorder("vsphere", _options.Vm, MethodName, _request, _log);
        Directory.CreateDirectory(_request.OutputDirectory);
        IVimClient? client = null;
        MoRef? vm = null;
        MoRef? createTask = null;
        MoRef? snapshot = null;
        string snapshotName = SnapshotName();
        Exception? failure = null;
        try
        {
            client = await ConnectAsync(recorder, cancellationToken).ConfigureAwait(false);
            string user = await client.LoginAsync(_credential.UserName, _credential.Password, cancellationToken).ConfigureAwait(false);
            recorder.Operator(user, $"vSphere session user ({client.Transport})");
            recorder.Step("login", $"as {user}");
            vm = await client.FindVmAsync(_options.Vm, _options.Datacenter, cancellationToken).ConfigureAwait(false);
            VmSummary summary = await client.GetVmAsync(vm, cancellationToken).ConfigureAwait(false);
            recorder.Step("resolve vm", $"{summary.Name} = {vm.Value}, datacenter {summary.DatacenterName}, {summary.PowerState}, {summary.SnapshotCount} snapshot(s)");
            if (summary.PowerState != "poweredOn")
            {
                throw new CaptureException($"VM {summary.Name} is {summary.PowerState}: a memory snapshot needs a running VM");
            }

            createTask = await client.CreateSnapshotAsync(vm, snapshotName, $"CloudMem memory capture{(_request.CaseId is null ? "" : " for case " + _request.CaseId)}", memory: true, quiesce: false, cancellationToken).ConfigureAwait(false);
            recorder.RequestId("vsphere", "CreateSnapshot_Task", createTask.Value);
            recorder.Step("CreateSnapshot_Task", $"{snapshotName} on {vm.Value} (memory=true, quiesce=false): task {createTask.Value}");
            VimTaskInfo created = await WaitTaskAsync(client, createTask, "CreateSnapshot_Task", _request.Timeouts.Operation, cancellationToken).ConfigureAwait(false);
            snapshot = created.Result ?? throw new CaptureException($"CreateSnapshot_Task {createTask.Value} succeeded without a snapshot reference");
            recorder.Resource("snapshot", snapshot.Value, $"{snapshotName} of {vm.Value} ({(_options.KeepSnapshot ? "kept" : "removed after the capture")})");
            recorder.Step("snapshot created", snapshot.Value);

            VmLayout layout = await client.GetLayoutAsync(vm, cancellationToken).ConfigureAwait(false);
            SnapshotFiles files = SnapshotFiles.Locate(layout, snapshot);
            recorder.Step("locate files", files.Describe());

            await DownloadAndVerifyAsync(client, recorder, summary.DatacenterName, files, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            failure = e is OperationCanceledException && cancellationToken.IsCancellationRequested
                ? new CaptureException("cancelled", e)
                : e;
        }
        finally
        {
            if (client is not null)
            {
                await CleanupAsync(client, recorder, vm, createTask, snapshot, snapshotName).ConfigureAwait(false);
                await SafeLogoutAsync(client).ConfigureAwait(false);
                await client.DisposeAsync().ConfigureAwait(false);
            }
        }

        return recorder.Finish(failure, $"vSphere capture of {_options.Vm}");
    }

    private async Task DownloadAndVerifyAsync(IVimClient client, CustodyRecorder recorder, string datacenter, SnapshotFiles files, CancellationToken cancellationToken)
    {
        using var folderHttp = new HttpClient(new FolderSessionHandler(() => client.SessionKey) { InnerHandler = _handlerFactory() })
        {
            BaseAddress = new Uri(_options.Server.GetLeftPart(UriPartial.Authority)),
            Timeout = Timeout.InfiniteTimeSpan, // the downloader bounds each read (idle timeout) instead
        };
        IDatastoreFolderApi folder = RestService.For<IDatastoreFolderApi>(folderHttp);
        var downloader = new DatastoreDownloader(folder, _options.Download, _log);
        var downloaded = new List<(SnapshotFile File, string LocalPath, long Size, string Sha256)>();
        foreach (SnapshotFile file in files.All)
        {
            string local = Path.Combine(_request.OutputDirectory, file.Path.FileName);
            if (File.Exists(local))
            {
                throw new CaptureException($"{local} exists; refusing to overwrite evidence (choose another --out)");
            }
            string partial = local + ".partial";
            TransferResult result;
            string sha256;
            try
            {
                await using (var stream = new FileStream(partial, FileMode.CreateNew, FileAccess.Write, FileShare.Read, 1, FileOptions.Asynchronous))
                await using (var hashing = new HashingStream(stream, leaveOpen: true))
                {
                    result = await downloader.TransferAsync(file.Path, datacenter, hashing, file.Size, _progress, cancellationToken).ConfigureAwait(false);
                    sha256 = hashing.Sha256Hex;
                    await stream.FlushAsync(cancellationToken).ConfigureAwait(false);
                    stream.Flush(flushToDisk: true);
                }
                File.Move(partial, local);
            }
            catch (FileNotFoundException) when (file.Optional)
            {
                File.Delete(partial);
                recorder.Step("download", $"{file.Path}: not on the datastore (memory is then inside the .vmsn)");
                continue;
            }
            catch
            {
                File.Delete(partial);
                throw;
            }
            double seconds = Math.Max(result.Elapsed.TotalSeconds, 1e-6);
            recorder.Step("download", string.Create(CultureInfo.InvariantCulture,
                $"{file.Path} -> {local}: {result.Bytes} bytes in {result.Elapsed.TotalSeconds:0.0} s ({result.Bytes / seconds / (1 << 20):0.0} MiB/s), {result.Resumes} resume(s), sha256 {sha256}"));
            downloaded.Add((file, local, result.Bytes, sha256));
        }

        foreach ((SnapshotFile file, string local, long size, string sha256) in downloaded)
        {
            string sourceSha256;
            if (_options.Verify == VSphereVerify.Remote)
            {
                await using var sink = new Sha256Sink();
                await downloader.TransferAsync(file.Path, datacenter, sink, size, null, cancellationToken).ConfigureAwait(false);
                sourceSha256 = sink.Sha256Hex;
                recorder.Step("hash datastore file", $"{file.Path}: second read from the datastore, sha256 {sourceSha256}");
            }
            else
            {
                (sourceSha256, _) = await Sha256Sink.HashFileAsync(local, cancellationToken).ConfigureAwait(false);
                recorder.Step("hash local copy", $"{local}: sha256 {sourceSha256}");
            }
            string? openedAs = null;
            string? problem = null;
            try
            {
                openedAs = _opener(local);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                problem = CaptureException.OneLine(e.Message);
            }
            string uri = $"{_options.Server.GetLeftPart(UriPartial.Authority)}/folder/{file.Path.Path}?dcPath={Uri.EscapeDataString(datacenter)}&dsName={Uri.EscapeDataString(file.Path.Datastore)}";
            recorder.Evidence(file.Path.ToString(), uri, local, size, file.Size >= 0 ? file.Size : size, sha256, sourceSha256, openedAs, problem);
        }
    }

    private async Task CleanupAsync(IVimClient client, CustodyRecorder recorder, MoRef? vm, MoRef? createTask, MoRef? snapshot, string snapshotName)
    {
        if (vm is null || createTask is null)
        {
            return;
        }
        using var cleanup = new CancellationTokenSource(_options.CleanupTimeout);
        try
        {
            var targets = new List<MoRef>();
            if (snapshot is not null)
            {
                targets.Add(snapshot);
            }
            else
            {
                // The create task failed or did not finish in time: the server may still make the snapshot. Look for ours by name.
                VimTaskInfo info = await client.GetTaskInfoAsync(createTask, cleanup.Token).ConfigureAwait(false);
                if (info.State == VimTaskState.Success && info.Result is not null)
                {
                    targets.Add(info.Result);
                }
                foreach (SnapshotRef existing in await client.ListSnapshotsAsync(vm, cleanup.Token).ConfigureAwait(false))
                {
                    if (existing.Name == snapshotName && !targets.Contains(existing.Snapshot))
                    {
                        targets.Add(existing.Snapshot);
                    }
                }
                if (targets.Count == 0)
                {
                    recorder.Step("cleanup", $"no snapshot named {snapshotName} on {vm.Value} (create task {createTask.Value}: {info.State}); nothing to remove");
                    return;
                }
            }
            foreach (MoRef target in targets)
            {
                if (_options.KeepSnapshot)
                {
                    recorder.Step("keep snapshot", $"{target.Value} left on {vm.Value} (--keep-snapshot)");
                    continue;
                }
                MoRef task = await client.RemoveSnapshotAsync(target, cleanup.Token).ConfigureAwait(false);
                recorder.RequestId("vsphere", "RemoveSnapshot_Task", task.Value);
                await WaitTaskAsync(client, task, "RemoveSnapshot_Task", _options.CleanupTimeout, cleanup.Token).ConfigureAwait(false);
                recorder.Step("RemoveSnapshot_Task", $"{target.Value} removed (task {task.Value})");
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            string why = e is OperationCanceledException ? $"did not finish within {Resilience.Describe(_options.CleanupTimeout)}" : CaptureException.OneLine(e.Message);
            recorder.Step("cleanup FAILED", $"snapshot {snapshot?.Value ?? snapshotName} of {vm.Value} may be left on the server: {why}; remove it by hand");
        }
    }

    private async Task<VimTaskInfo> WaitTaskAsync(IVimClient client, MoRef task, string what, TimeSpan timeout, CancellationToken cancellationToken)
    {
        VimTaskInfo info = await Resilience.PollUntilAsync($"vSphere {what} (task {task.Value})", async token =>
        {
            VimTaskInfo current = await client.GetTaskInfoAsync(task, token).ConfigureAwait(false);
            string state = current.Progress is null ? current.State.ToString() : $"{current.State} {current.Progress}%";
            return current.State is VimTaskState.Success or VimTaskState.Error ? PollState<VimTaskInfo>.Finished(state, current) : PollState<VimTaskInfo>.Pending(state);
        }, _request.Timeouts.PollInterval, timeout, cancellationToken).ConfigureAwait(false);
        if (info.State == VimTaskState.Error)
        {
            throw new CaptureException($"vSphere {what} (task {task.Value}) failed: {info.Error ?? "no message"}");
        }
        return info;
    }

    private async Task<IVimClient> ConnectAsync(CustodyRecorder recorder, CancellationToken cancellationToken)
    {
        IVimClient client = await CreateClientAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            await client.ConnectAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await client.DisposeAsync().ConfigureAwait(false);
            throw;
        }
        recorder.Step("connect", $"{_options.Server.GetLeftPart(UriPartial.Authority)} over {client.Transport}: {client.ServerDescription ?? "unknown server"}{(_options.PinnedThumbprint is null ? "" : ", certificate pinned " + VSphereHttp.NormalizeThumbprint(_options.PinnedThumbprint))}");
        return client;
    }

    private async Task<IVimClient> CreateClientAsync(CancellationToken cancellationToken)
    {
        try
        {
            bool json = _options.Transport switch
            {
                VSphereTransport.ViJson => true,
                VSphereTransport.Soap => false,
                _ => await ProbeJsonAsync(cancellationToken).ConfigureAwait(false),
            };
            return json
                ? new VimJsonClient(_options.Server, _handlerFactory(), _options.ApiRelease)
                : new VimSoapClient(_options.Server, _handlerFactory());
        }
        catch (HttpRequestException e)
        {
            throw new CaptureException(VSphereHttp.DescribeConnectFailure(_options.Server, e), e);
        }
    }

    private async Task<bool> ProbeJsonAsync(CancellationToken cancellationToken)
    {
        using HttpMessageHandler handler = _handlerFactory();
        return await VimJsonClient.ProbeAsync(_options.Server, handler, _options.ApiRelease, cancellationToken).ConfigureAwait(false);
    }

    private async Task<IVimClient?> TryConnectForPlanAsync(CapturePlan plan, CancellationToken cancellationToken)
    {
        try
        {
            IVimClient client = await CreateClientAsync(cancellationToken).ConfigureAwait(false);
            await client.ConnectAsync(cancellationToken).ConfigureAwait(false);
            plan.Check("connect", true, $"{client.Transport}: {client.ServerDescription ?? "unknown server"}");
            return client;
        }
        catch (Exception e) when (e is CaptureException or HttpRequestException)
        {
            plan.Check("connect", false, e is HttpRequestException ? VSphereHttp.DescribeConnectFailure(_options.Server, e) : e.Message);
            return null;
        }
    }

    private async Task SafeLogoutAsync(IVimClient client)
    {
        try
        {
            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await client.LogoutAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            _log.Warn($"vSphere logout failed: {CaptureException.OneLine(e.Message)}");
        }
    }

    private string SnapshotName()
    {
        string time = DateTimeOffset.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        return _request.CaseId is null ? $"cloudmem-{time}" : $"cloudmem-{_request.CaseId}-{time}";
    }
}

/// <summary>One file of a memory snapshot to fetch.</summary>
public sealed record SnapshotFile(DatastorePath Path, string Role, long Size, bool Optional);

/// <summary>The files of one snapshot, found in the VM's layoutEx.</summary>
public sealed record SnapshotFiles(SnapshotFile State, SnapshotFile? Memory, string How)
{
    /// <summary>The state file, then the memory file.</summary>
    public IEnumerable<SnapshotFile> All => Memory is null ? [State] : [State, Memory];

    /// <summary>
    /// Finds the snapshot's files: layoutEx.snapshot[key == snapshot].dataKey is the .vmsn; memoryKey (when not -1) the
    /// .vmem. ESXi sets memoryKey for a memory snapshot; when it is -1 (vcsim's own layout; some older hosts) the .vmem
    /// is looked for beside the .vmsn under the same name (X.vmsn, X.vmem: VMware's naming rule, which our VMware reader
    /// also uses) and is optional (absent: the memory is inside the .vmsn).
    /// </summary>
    /// <exception cref="CaptureException">the layout has no entry or no data file for the snapshot.</exception>
    public static SnapshotFiles Locate(VmLayout layout, MoRef snapshot)
    {
        LayoutSnapshot entry = layout.Snapshots.FirstOrDefault(s => s.Snapshot.Value == snapshot.Value)
            ?? throw new CaptureException($"the VM's layoutEx lists no files for snapshot {snapshot.Value}");
        LayoutFile data = layout.Files.FirstOrDefault(f => f.Key == entry.DataKey)
            ?? throw new CaptureException($"layoutEx: snapshot {snapshot.Value} names data file key {entry.DataKey}, which is not in the file list");
        var state = new SnapshotFile(DatastorePath.Parse(data.Name), "state", data.Size, Optional: false);
        if (entry.MemoryKey >= 0)
        {
            LayoutFile memory = layout.Files.FirstOrDefault(f => f.Key == entry.MemoryKey)
                ?? throw new CaptureException($"layoutEx: snapshot {snapshot.Value} names memory file key {entry.MemoryKey}, which is not in the file list");
            return new SnapshotFiles(state, new SnapshotFile(DatastorePath.Parse(memory.Name), "memory", memory.Size, Optional: false), "layoutEx dataKey and memoryKey");
        }
        string stem = state.Path.FileName.EndsWith(".vmsn", StringComparison.OrdinalIgnoreCase) ? state.Path.FileName[..^5] : state.Path.FileName;
        return new SnapshotFiles(state, new SnapshotFile(state.Path.WithFileName(stem + ".vmem"), "memory", -1, Optional: true),
            "layoutEx dataKey; memoryKey is -1, so the .vmem is looked for beside the .vmsn");
    }

    /// <summary>One line for the manifest.</summary>
    public string Describe() => $"{State.Path} ({(State.Size >= 0 ? State.Size + " bytes" : "size unknown")})"
        + (Memory is null ? "" : $", {Memory.Path} ({(Memory.Size >= 0 ? Memory.Size + " bytes" : "size unknown")})") + $" from {How}";
}
