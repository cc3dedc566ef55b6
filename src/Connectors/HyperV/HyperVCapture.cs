using System.Globalization;
using System.Text.Json;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.HyperV;

/// <summary>How the VM's memory is written to disk by Hyper-V.</summary>
public enum HyperVMethod
{
    /// <summary>A standard checkpoint (saved state in Snapshots\{id}.vmrs); the VM keeps running.</summary>
    Checkpoint,
    /// <summary>Save-VM (the VM stops; its .vmrs is in "Virtual Machines"); started again afterwards.</summary>
    Save,
}

/// <summary>Options of a Hyper-V capture.</summary>
public sealed record HyperVCaptureOptions
{
    /// <summary>VM name on the host.</summary>
    public required string VmName { get; init; }

    /// <summary>Hyper-V host.</summary>
    public required string Host { get; init; }

    /// <summary>Checkpoint (default) or Save.</summary>
    public HyperVMethod Method { get; init; } = HyperVMethod.Checkpoint;

    /// <summary>Own limit for the cleanup steps (also after a failure or Ctrl+C).</summary>
    public TimeSpan CleanupTimeout { get; init; } = TimeSpan.FromMinutes(10);
}

/// <summary>
/// Memory capture of a Hyper-V VM through PowerShell on its host: a standard checkpoint (CheckpointType set to Standard
/// for it and restored after) or Save-VM; the .vmrs/.vmcx are located (Get-VMSnapshot / Get-VM paths), hashed on the host
/// (Get-FileHash), copied here, hashed again on our side and opened with our parsers; then Remove-VMSnapshot (or Start-VM)
/// and the checkpoint type restored, on every path, under their own timeout. Every step goes to the custody manifest.
/// </summary>
public sealed class HyperVCapture : ICaptureConnector
{
    private readonly HyperVCaptureOptions _options;
    private readonly IRemotePowerShell _shell;
    private readonly CaptureRequest _request;
    private readonly CaptureLog _log;
    private readonly EvidenceOpener _opener;

    /// <summary>Creates the capture over <paramref name="shell"/> (not owned).</summary>
    public HyperVCapture(HyperVCaptureOptions options, IRemotePowerShell shell, CaptureRequest request, CaptureLog log, EvidenceOpener opener)
    {
        _options = options;
        _shell = shell;
        _request = request;
        _log = log;
        _opener = opener;
    }

    /// <summary>Method name in the manifest.</summary>
    public string MethodName => _options.Method == HyperVMethod.Checkpoint ? "standard-checkpoint" : "save-vm";

    /// <summary>The step scripts (run on the host; <c>$a</c> holds the arguments).</summary>
    internal static class Scripts
    {
        public const string GetVm = "Get-VM -Name $a.vm | Select-Object Name, @{n='Id';e={$_.Id.ToString()}}, @{n='State';e={$_.State.ToString()}}, @{n='CheckpointType';e={$_.CheckpointType.ToString()}}, ConfigurationLocation, SnapshotFileLocation";
        public const string SetCheckpointType = "Set-VM -Name $a.vm -CheckpointType $a.type";
        public const string Checkpoint = "Checkpoint-VM -Name $a.vm -SnapshotName $a.name -Passthru | Select-Object Name, @{n='Id';e={$_.Id.ToString()}}, Path";
        public const string FindCheckpoint = "Get-VMSnapshot -VMName $a.vm -Name $a.name -ErrorAction SilentlyContinue | Select-Object Name, @{n='Id';e={$_.Id.ToString()}}, Path";
        public const string CheckpointFiles = "$c = Get-VMSnapshot -VMName $a.vm -Name $a.name; Get-ChildItem -LiteralPath (Join-Path $c.Path 'Snapshots') | Where-Object { $_.BaseName -eq $c.Id.ToString() -and $_.Extension -in '.vmrs','.vmcx' } | Select-Object FullName, Length, @{n='Sha256';e={(Get-FileHash -LiteralPath $_.FullName -Algorithm SHA256).Hash}}";
        public const string RemoveCheckpoint = "Get-VMSnapshot -VMName $a.vm -Name $a.name | Remove-VMSnapshot";
        public const string Save = "Save-VM -Name $a.vm";
        public const string SavedFiles = "$v = Get-VM -Name $a.vm; Get-ChildItem -LiteralPath (Join-Path $v.ConfigurationLocation 'Virtual Machines') | Where-Object { $_.BaseName -eq $v.Id.ToString() -and $_.Extension -in '.vmrs','.vmcx' } | Select-Object FullName, Length, @{n='Sha256';e={(Get-FileHash -LiteralPath $_.FullName -Algorithm SHA256).Hash}}";
        public const string Start = "Start-VM -Name $a.vm";
    }

    /// <inheritdoc />
    public async Task<CapturePlan> PlanAsync(CancellationToken cancellationToken)
    {
        var plan = new CapturePlan("hyperv", _options.VmName, MethodName);
        plan.Check("transport", true, _shell.Description);
        try
        {
            VmInfo vm = await GetVmAsync(cancellationToken).ConfigureAwait(false);
            plan.Check("vm", true, $"{vm.Name} ({vm.Id}) on {_options.Host}, checkpoint type {vm.CheckpointType}");
            plan.Check("state", vm.State == "Running", vm.State == "Running" ? "Running" : $"{vm.State}: capturing memory needs a running VM");
        }
        catch (CaptureException e)
        {
            plan.Check("vm", false, e.Message);
        }
        if (_options.Method == HyperVMethod.Checkpoint)
        {
            plan.Step("Set-VM -CheckpointType Standard", "only when the VM's type differs; restored afterwards");
            plan.Step("Checkpoint-VM", "standard checkpoint cloudmem-<case>-<time> (the VM keeps running)");
            plan.Step("locate files", "Get-VMSnapshot Path\\Snapshots\\<id>.vmrs/.vmcx, Get-FileHash on the host", mutating: false);
        }
        else
        {
            plan.Step("Save-VM", "the VM stops in a saved state");
            plan.Step("locate files", "ConfigurationLocation\\Virtual Machines\\<id>.vmrs/.vmcx, Get-FileHash on the host", mutating: false);
        }
        plan.Step("copy", $"Copy-Item -FromSession into {_request.OutputDirectory}; SHA-256 here compared with the host's; open with our parsers", mutating: false);
        plan.Step(_options.Method == HyperVMethod.Checkpoint ? "Remove-VMSnapshot" : "Start-VM", $"on every path (own timeout {Resilience.Describe(_options.CleanupTimeout)})");
        return plan;
    }

    /// <inheritdoc />
    public async Task<CaptureResult> CaptureAsync(CancellationToken cancellationToken)
    {
        var recorder = new CustodyRecorder("hyperv", _options.VmName, MethodName, _request, _log);
        Directory.CreateDirectory(_request.OutputDirectory);
        string name = CheckpointName();
        string? restoreType = null;
        bool mutated = false;
        Exception? failure = null;
        try
        {
            recorder.Step("connect", _shell.Description);
            VmInfo vm = await GetVmAsync(cancellationToken).ConfigureAwait(false);
            recorder.Step("Get-VM", $"{vm.Name} ({vm.Id}) {vm.State}, checkpoint type {vm.CheckpointType}");
            if (vm.State != "Running")
            {
                throw new CaptureException($"VM {vm.Name} is {vm.State}: capturing memory needs a running VM");
            }
            IReadOnlyList<RemoteFile> files;
            if (_options.Method == HyperVMethod.Checkpoint)
            {
                if (vm.CheckpointType != "Standard")
                {
                    await InvokeAsync("Set-VM", Scripts.SetCheckpointType, new() { ["vm"] = _options.VmName, ["type"] = "Standard" }, cancellationToken).ConfigureAwait(false);
                    restoreType = vm.CheckpointType;
                    recorder.Step("Set-VM", $"CheckpointType {vm.CheckpointType} -> Standard (restored afterwards)");
                }
                mutated = true;
                JsonElement checkpoint = await InvokeAsync("Checkpoint-VM", Scripts.Checkpoint, new() { ["vm"] = _options.VmName, ["name"] = name }, cancellationToken).ConfigureAwait(false);
                string id = Text(checkpoint, "Id") ?? "?";
                recorder.Resource("checkpoint", id, $"{name} of {_options.VmName} (removed after the capture)");
                recorder.Step("Checkpoint-VM", $"standard checkpoint {name} ({id})");
                files = ReadFiles(await InvokeAsync("locate files", Scripts.CheckpointFiles, new() { ["vm"] = _options.VmName, ["name"] = name }, cancellationToken).ConfigureAwait(false));
            }
            else
            {
                mutated = true;
                await InvokeAsync("Save-VM", Scripts.Save, new() { ["vm"] = _options.VmName }, cancellationToken).ConfigureAwait(false);
                recorder.Step("Save-VM", $"{_options.VmName} saved (started again afterwards)");
                files = ReadFiles(await InvokeAsync("locate files", Scripts.SavedFiles, new() { ["vm"] = _options.VmName }, cancellationToken).ConfigureAwait(false));
            }
            if (!files.Any(f => f.FullName.EndsWith(".vmrs", StringComparison.OrdinalIgnoreCase)))
            {
                throw new CaptureException($"no .vmrs found for {_options.VmName} on {_options.Host} ({files.Count} file(s) listed)");
            }
            recorder.Step("locate files", string.Join(", ", files.Select(f => $"{f.FullName} ({f.Length} bytes, host sha256 {f.Sha256.ToLowerInvariant()})")));
            foreach (RemoteFile file in files)
            {
                await CopyAndVerifyAsync(recorder, file, cancellationToken).ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            failure = e is OperationCanceledException && cancellationToken.IsCancellationRequested ? new CaptureException("cancelled", e) : e;
        }
        finally
        {
            await CleanupAsync(recorder, mutated, name, restoreType).ConfigureAwait(false);
        }
        return recorder.Finish(failure, $"Hyper-V capture of {_options.VmName}");
    }

    private async Task CopyAndVerifyAsync(CustodyRecorder recorder, RemoteFile file, CancellationToken cancellationToken)
    {
        string fileName = file.FullName.Replace('\\', '/').Split('/')[^1];
        string local = Path.Combine(_request.OutputDirectory, fileName);
        if (File.Exists(local))
        {
            throw new CaptureException($"{local} exists; refusing to overwrite evidence (choose another --out)");
        }
        await _shell.CopyFromHostAsync(file.FullName, local, cancellationToken).ConfigureAwait(false);
        (string sha256, long size) = await Sha256Sink.HashFileAsync(local, cancellationToken).ConfigureAwait(false);
        recorder.Step("copy", $"{file.FullName} -> {local}: {size} bytes, sha256 {sha256}");
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
        recorder.Evidence(fileName, $"hyperv://{_options.Host}/{file.FullName.Replace('\\', '/')}", local, size, file.Length, sha256, file.Sha256, openedAs, problem);
    }

    private async Task CleanupAsync(CustodyRecorder recorder, bool mutated, string name, string? restoreType)
    {
        if (!mutated && restoreType is null)
        {
            return;
        }
        using var cleanup = new CancellationTokenSource(_options.CleanupTimeout);
        var vm = new Dictionary<string, string> { ["vm"] = _options.VmName };
        if (_options.Method == HyperVMethod.Checkpoint && mutated)
        {
            await CleanupStepAsync(recorder, "Remove-VMSnapshot", async token =>
            {
                // Checkpoint-VM may have made the checkpoint even when it failed or timed out: look it up by name.
                JsonElement found = await InvokeAsync("find checkpoint", Scripts.FindCheckpoint, new() { ["vm"] = _options.VmName, ["name"] = name }, token).ConfigureAwait(false);
                if (found.ValueKind == JsonValueKind.Undefined || found.ValueKind == JsonValueKind.Null)
                {
                    return $"no checkpoint named {name}; nothing to remove";
                }
                await InvokeAsync("Remove-VMSnapshot", Scripts.RemoveCheckpoint, new() { ["vm"] = _options.VmName, ["name"] = name }, token).ConfigureAwait(false);
                return $"checkpoint {name} removed";
            }, cleanup.Token).ConfigureAwait(false);
        }
        if (_options.Method == HyperVMethod.Save && mutated)
        {
            await CleanupStepAsync(recorder, "Start-VM", async token =>
            {
                await InvokeAsync("Start-VM", Scripts.Start, vm, token).ConfigureAwait(false);
                return $"{_options.VmName} started";
            }, cleanup.Token).ConfigureAwait(false);
        }
        if (restoreType is not null)
        {
            await CleanupStepAsync(recorder, "restore checkpoint type", async token =>
            {
                await InvokeAsync("Set-VM", Scripts.SetCheckpointType, new() { ["vm"] = _options.VmName, ["type"] = restoreType }, token).ConfigureAwait(false);
                return $"CheckpointType back to {restoreType}";
            }, cleanup.Token).ConfigureAwait(false);
        }
    }

    private async Task CleanupStepAsync(CustodyRecorder recorder, string action, Func<CancellationToken, Task<string>> step, CancellationToken token)
    {
        try
        {
            recorder.Step(action, await step(token).ConfigureAwait(false));
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            string why = e is OperationCanceledException ? $"did not finish within {Resilience.Describe(_options.CleanupTimeout)}" : CaptureException.OneLine(e.Message);
            recorder.Step("cleanup FAILED", $"{action} on {_options.VmName}: {why}; do it by hand");
        }
    }

    private async Task<VmInfo> GetVmAsync(CancellationToken cancellationToken)
    {
        JsonElement vm = await InvokeAsync("Get-VM", Scripts.GetVm, new() { ["vm"] = _options.VmName }, cancellationToken).ConfigureAwait(false);
        if (vm.ValueKind != JsonValueKind.Object)
        {
            throw new CaptureException($"no VM named {_options.VmName} on {_options.Host}");
        }
        return new VmInfo(Text(vm, "Name") ?? _options.VmName, Text(vm, "Id") ?? "?", Text(vm, "State") ?? "unknown", Text(vm, "CheckpointType") ?? "unknown");
    }

    private Task<JsonElement> InvokeAsync(string step, string script, Dictionary<string, string> arguments, CancellationToken cancellationToken)
        => _shell.InvokeAsync(step, script, arguments, cancellationToken);

    private static IReadOnlyList<RemoteFile> ReadFiles(JsonElement output)
    {
        IEnumerable<JsonElement> items = output.ValueKind switch
        {
            JsonValueKind.Array => output.EnumerateArray(),
            JsonValueKind.Object => [output],
            _ => [],
        };
        return [.. items.Select(i => new RemoteFile(
            Text(i, "FullName") ?? throw new CaptureException("file listing without FullName"),
            i.TryGetProperty("Length", out JsonElement length) && length.TryGetInt64(out long value) ? value : -1,
            Text(i, "Sha256") ?? throw new CaptureException("file listing without Sha256")))];
    }

    private static string? Text(JsonElement element, string property)
        => element.ValueKind == JsonValueKind.Object && element.TryGetProperty(property, out JsonElement value) && value.ValueKind != JsonValueKind.Null
            ? value.ValueKind == JsonValueKind.String ? value.GetString() : value.ToString()
            : null;

    private string CheckpointName()
    {
        string time = DateTimeOffset.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        return _request.CaseId is null ? $"cloudmem-{time}" : $"cloudmem-{_request.CaseId}-{time}";
    }

    private sealed record VmInfo(string Name, string Id, string State, string CheckpointType);

    private sealed record RemoteFile(string FullName, long Length, string Sha256);
}
