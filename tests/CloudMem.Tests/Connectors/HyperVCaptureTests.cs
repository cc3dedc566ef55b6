using System.Text.Json;
using CloudMem.Cli.Commands;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.HyperV;
using CloudMem.Engine.Convert;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Connectors;

/// <summary>
/// Hyper-V capture orchestration against a fake host (no Hyper-V here): the fake plays Get-VM / Set-VM / Checkpoint-VM /
/// Get-VMSnapshot / Save-VM / Start-VM state and serves a REAL .vmrs that our converter wrote from the fixture capture.
/// Checked: order of steps, cleanup on every failure path, manifest, hash verification, opening with our parser.
/// </summary>
public sealed class HyperVCaptureTests : IDisposable
{
    private static readonly Lazy<string> s_vmrs = new(MakeVmrs);
    private readonly string _out = Path.Combine(Path.GetTempPath(), $"cloudmem-hyperv-{Guid.NewGuid():N}");

    public void Dispose()
    {
        if (Directory.Exists(_out))
        {
            Directory.Delete(_out, recursive: true);
        }
    }

    private static string MakeVmrs()
    {
        (string _, string vmem) = VSphereSeeds.Get(sliceBytes: 32 << 20); // a 32 MiB slice of the real capture
        string path = Path.Combine(Path.GetDirectoryName(vmem)!, "..", "hv", "seed.vmrs");
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using RunMappedMemory memory = CaptureOpener.Open(vmem);
        CaptureConverter.Convert(vmem, memory, "vmrs", path);
        return path;
    }

    private HyperVCapture Make(FakeHyperVHost host, HyperVMethod method)
    {
        var log = new CaptureLog(new SecretScrubber());
        var request = new CaptureRequest { CaseId = "IR-9", OutputDirectory = _out, Download = true };
        return new HyperVCapture(new HyperVCaptureOptions { VmName = "web01", Host = "hv01", Method = method }, host, request, log, CaptureCli.ParserOpener);
    }

    [SkippableFact]
    public async Task Checkpoint_sets_standard_copies_verifies_opens_then_removes_and_restores()
    {
        var host = new FakeHyperVHost(s_vmrs.Value);
        CaptureResult result = await Make(host, HyperVMethod.Checkpoint).CaptureAsync(CancellationToken.None);

        Assert.Equal(["Get-VM", "Set-VM", "Checkpoint-VM", "locate files", "copy", "find checkpoint", "Remove-VMSnapshot", "Set-VM"], host.Calls);
        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        EvidenceRecord evidence = Assert.Single(result.Manifest.Evidence);
        Assert.True(evidence.Verified, evidence.Problem);
        Assert.Equal(VSphereSeeds.Sha256(s_vmrs.Value), evidence.Sha256);
        Assert.Equal(evidence.Sha256, evidence.SourceSha256);
        Assert.Contains("Hyper-V", evidence.OpenedAs, StringComparison.Ordinal);
        Assert.Empty(host.Checkpoints);
        Assert.Equal("Production", host.CheckpointType);
        Assert.Equal("standard-checkpoint", result.Manifest.Method);
    }

    [SkippableFact]
    public async Task Save_saves_copies_verifies_and_starts_the_vm_again()
    {
        var host = new FakeHyperVHost(s_vmrs.Value);
        CaptureResult result = await Make(host, HyperVMethod.Save).CaptureAsync(CancellationToken.None);

        Assert.Equal(["Get-VM", "Save-VM", "locate files", "copy", "Start-VM"], host.Calls);
        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        Assert.Equal("Running", host.State);
    }

    [SkippableTheory]
    [InlineData(HyperVMethod.Checkpoint, "Checkpoint-VM", new[] { "Get-VM", "Set-VM", "Checkpoint-VM", "find checkpoint", "Remove-VMSnapshot", "Set-VM" })]
    [InlineData(HyperVMethod.Checkpoint, "locate files", new[] { "Get-VM", "Set-VM", "Checkpoint-VM", "locate files", "find checkpoint", "Remove-VMSnapshot", "Set-VM" })]
    [InlineData(HyperVMethod.Checkpoint, "copy", new[] { "Get-VM", "Set-VM", "Checkpoint-VM", "locate files", "copy", "find checkpoint", "Remove-VMSnapshot", "Set-VM" })]
    [InlineData(HyperVMethod.Save, "Save-VM", new[] { "Get-VM", "Save-VM", "Start-VM" })]
    [InlineData(HyperVMethod.Save, "copy", new[] { "Get-VM", "Save-VM", "locate files", "copy", "Start-VM" })]
    public async Task Every_failure_path_cleans_up_and_writes_a_failed_manifest(HyperVMethod method, string failAt, string[] expected)
    {
        var host = new FakeHyperVHost(s_vmrs.Value) { FailAt = failAt, CheckpointMadeBeforeFailure = true };
        var error = await Assert.ThrowsAsync<CaptureException>(() => Make(host, method).CaptureAsync(CancellationToken.None));

        Assert.Contains($"'{failAt}' failed", error.Message, StringComparison.Ordinal);
        Assert.Equal(expected, host.Calls);
        Assert.Empty(host.Checkpoints);
        Assert.Equal("Production", host.CheckpointType);
        Assert.Equal("Running", host.State);
        CustodyManifest manifest = CustodyManifest.Read(Directory.EnumerateFiles(_out, "*.custody.json").Single());
        Assert.Equal(CustodyStatus.Failed, manifest.Status);
    }

    [SkippableFact]
    public async Task A_copy_that_differs_from_the_host_hash_fails_and_still_cleans_up()
    {
        var host = new FakeHyperVHost(s_vmrs.Value) { CorruptCopy = true };
        var error = await Assert.ThrowsAsync<CaptureException>(() => Make(host, HyperVMethod.Checkpoint).CaptureAsync(CancellationToken.None));

        Assert.Contains("differs", error.Message, StringComparison.Ordinal);
        Assert.Empty(host.Checkpoints);
        Assert.Equal("Production", host.CheckpointType);
    }

    [SkippableFact]
    public async Task A_vm_that_is_not_running_changes_nothing()
    {
        var host = new FakeHyperVHost(s_vmrs.Value) { State = "Off" };
        var error = await Assert.ThrowsAsync<CaptureException>(() => Make(host, HyperVMethod.Checkpoint).CaptureAsync(CancellationToken.None));
        Assert.Contains("is Off", error.Message, StringComparison.Ordinal);
        Assert.Equal(["Get-VM"], host.Calls);
        CapturePlan plan = await Make(new FakeHyperVHost(s_vmrs.Value) { State = "Off" }, HyperVMethod.Save).PlanAsync(CancellationToken.None);
        Assert.False(plan.Ready);
    }

    [Fact]
    public void Without_pwsh_the_real_runner_says_so()
    {
        string? before = Environment.GetEnvironmentVariable("CLOUDMEM_PWSH");
        Environment.SetEnvironmentVariable("CLOUDMEM_PWSH", "/nonexistent/pwsh");
        try
        {
            var error = Assert.Throws<CaptureException>(() => new PwshRemotePowerShell("hv01", false, null));
            Assert.Contains("needs PowerShell 7 (pwsh)", error.Message, StringComparison.Ordinal);
        }
        finally
        {
            Environment.SetEnvironmentVariable("CLOUDMEM_PWSH", before);
        }
    }

    /// <summary>A Hyper-V host in memory: VM state, checkpoint type, checkpoints; serves one real .vmrs.</summary>
    private sealed class FakeHyperVHost(string vmrs) : IRemotePowerShell
    {
        private readonly string _sha256 = VSphereSeeds.Sha256(vmrs).ToUpperInvariant();

        public List<string> Calls { get; } = [];
        public Dictionary<string, string> Checkpoints { get; } = [];
        public string State { get; set; } = "Running";
        public string CheckpointType { get; set; } = "Production";
        public string? FailAt { get; init; }
        public bool CheckpointMadeBeforeFailure { get; init; }
        public bool CorruptCopy { get; init; }

        public string Description => "fake Hyper-V host";

        public Task<JsonElement> InvokeAsync(string step, string script, IReadOnlyDictionary<string, string> arguments, CancellationToken cancellationToken)
        {
            Calls.Add(step);
            if (step == "Checkpoint-VM" && FailAt == step && CheckpointMadeBeforeFailure)
            {
                Checkpoints[arguments["name"]] = Guid.NewGuid().ToString(); // the checkpoint exists although the call failed
            }
            if (FailAt == step)
            {
                throw new CaptureException($"Hyper-V step '{step}' failed on hv01: simulated");
            }
            object? output = step switch
            {
                "Get-VM" => new { Name = "web01", Id = "6f1d2c3b-0000-4000-8000-000000000001", State, CheckpointType, ConfigurationLocation = @"C:\VMs\web01" },
                "Set-VM" => Set(() => CheckpointType = arguments["type"]),
                "Checkpoint-VM" => CheckpointType == "Standard" && State == "Running" ? MakeCheckpoint(arguments["name"]) : throw new CaptureException("not a standard checkpoint"),
                "find checkpoint" => Checkpoints.TryGetValue(arguments["name"], out string? id) ? new { Name = arguments["name"], Id = id, Path = @"C:\VMs\web01" } : null,
                "Remove-VMSnapshot" => Set(() => Checkpoints.Remove(arguments["name"])),
                "Save-VM" => Set(() => State = "Saved"),
                "Start-VM" => Set(() => State = "Running"),
                "locate files" => Files(arguments),
                _ => throw new InvalidOperationException($"unexpected step {step}"),
            };
            Assert.Contains(step is "find checkpoint" or "locate files" ? "$a." : step.Split(' ')[0], script, StringComparison.Ordinal);
            return Task.FromResult(output is null ? default : JsonSerializer.SerializeToElement(output));
        }

        public Task CopyFromHostAsync(string remotePath, string localPath, CancellationToken cancellationToken)
        {
            Calls.Add("copy");
            if (FailAt == "copy")
            {
                throw new CaptureException("Hyper-V step 'copy' failed on hv01: simulated");
            }
            File.Copy(vmrs, localPath);
            if (CorruptCopy)
            {
                using var file = new FileStream(localPath, FileMode.Open, FileAccess.ReadWrite);
                file.Position = 0x3000;
                int b = file.ReadByte();
                file.Position = 0x3000;
                file.WriteByte((byte)(b ^ 0xFF));
            }
            return Task.CompletedTask;
        }

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;

        private object MakeCheckpoint(string name)
        {
            string id = Guid.NewGuid().ToString();
            Checkpoints[name] = id;
            return new { Name = name, Id = id, Path = @"C:\VMs\web01" };
        }

        private object[] Files(IReadOnlyDictionary<string, string> arguments)
        {
            string id = arguments.TryGetValue("name", out string? name) ? Checkpoints[name] : "6f1d2c3b-0000-4000-8000-000000000001";
            string folder = arguments.ContainsKey("name") ? "Snapshots" : "Virtual Machines";
            if (!arguments.ContainsKey("name") && State != "Saved")
            {
                throw new CaptureException("no saved state");
            }
            return [new { FullName = $@"C:\VMs\web01\{folder}\{id}.vmrs", Length = new FileInfo(vmrs).Length, Sha256 = _sha256 }];
        }

        private static object? Set(Action action)
        {
            action();
            return null;
        }
    }
}
