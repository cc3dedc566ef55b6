using System.Net;
using System.Text.Json;
using CloudMem.Cli.Commands;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.VSphere;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors;

/// <summary>
/// vSphere memory capture against govmomi's simulator (SOAP /sdk and /folder, tests/emulators/vcsim) and, for VI/JSON
/// (which vcsim 0.24 lacks), against <see cref="FakeViJsonServer"/>. The snapshot files are a real fixture capture:
/// .fixtures/basic/memory.raw as the .vmem and the .vmsn our converter writes for it.
/// </summary>
public sealed class VSphereCaptureTests : IDisposable
{
    private const string Password = "Pa55-w0rd!vsphere-secret";
    private readonly string _out = Path.Combine(Path.GetTempPath(), $"cloudmem-vsphere-{Guid.NewGuid():N}");
    private readonly StringWriter _logText = new();

    public void Dispose()
    {
        if (Directory.Exists(_out))
        {
            Directory.Delete(_out, recursive: true);
        }
    }

    private (VSphereCapture Capture, CaptureLog Log) Make(Uri server, string vm, VSphereTransport transport,
        VSphereVerify verify = VSphereVerify.Remote, DownloadPolicy? download = null, TimeSpan? operation = null,
        IProgress<TransferProgress>? progress = null, string user = "user", bool keep = false)
    {
        var log = new CaptureLog(new SecretScrubber(), _logText);
        var options = new VSphereCaptureOptions
        {
            Server = server,
            Vm = vm,
            Transport = transport,
            Verify = verify,
            KeepSnapshot = keep,
            Download = download ?? new DownloadPolicy { RetryDelay = TimeSpan.FromMilliseconds(50) },
            CleanupTimeout = TimeSpan.FromSeconds(30),
        };
        var request = new CaptureRequest
        {
            CaseId = "IR-2026-7",
            OutputDirectory = _out,
            Download = true,
            Timeouts = new CaptureTimeouts { PollInterval = TimeSpan.FromMilliseconds(50), Operation = operation ?? TimeSpan.FromSeconds(30) },
        };
        return (new VSphereCapture(options, new NetworkCredential(user, Password), request, log, CaptureCli.ParserOpener, progress: progress), log);
    }

    private static async Task<int> SnapshotCountAsync(Uri server, string vm)
    {
        await using var client = new VimSoapClient(server, new HttpClientHandler());
        await client.ConnectAsync(CancellationToken.None);
        await client.LoginAsync("user", "pass", CancellationToken.None);
        MoRef reference = await client.FindVmAsync(vm, null, CancellationToken.None);
        return (await client.ListSnapshotsAsync(reference, CancellationToken.None)).Count;
    }

    private void AssertNoSecret(CustodyManifest manifest)
    {
        string manifestText = manifest.ToJson();
        Assert.DoesNotContain(Password, manifestText, StringComparison.Ordinal);
        Assert.DoesNotContain(Password, _logText.ToString(), StringComparison.Ordinal);
        foreach (string file in Directory.EnumerateFiles(_out, "*.json"))
        {
            Assert.DoesNotContain(Password, File.ReadAllText(file), StringComparison.Ordinal);
        }
    }

    [SkippableFact]
    public async Task Soap_capture_of_a_whole_real_capture_through_vcsim_verifies_opens_and_removes_the_snapshot()
    {
        (string vmsn, string vmem) = VSphereSeeds.Get();
        using var vcsim = new VcsimProcess(vmsn, vmem);
        // Given the simulator wrote the snapshot files, when the download starts: hash them where they are stored.
        var onDatastore = new Dictionary<string, string>();
        var progress = new SyncProgress(p =>
        {
            if (!onDatastore.ContainsKey(p.File))
            {
                string stored = vcsim.SnapshotFiles().Single(f => Path.GetFileName(f) == p.File);
                onDatastore[p.File] = VSphereSeeds.Sha256(stored);
            }
        });
        (VSphereCapture capture, _) = Make(vcsim.Url, "DC0_H0_VM0", VSphereTransport.Auto, progress: progress);

        CaptureResult result = await capture.CaptureAsync(CancellationToken.None);

        CustodyManifest manifest = result.Manifest;
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        Assert.Equal(CustodyStatus.Completed, CustodyManifest.Read(result.ManifestPath).Status);
        Assert.Equal(2, manifest.Evidence.Count);
        foreach (EvidenceRecord evidence in manifest.Evidence)
        {
            Assert.True(evidence.Verified, evidence.Problem);
            Assert.Equal("VMware checkpoint", evidence.OpenedAs);
            string name = Path.GetFileName(evidence.LocalPath!);
            Assert.Equal(onDatastore[name], evidence.Sha256);          // manifest == datastore
            Assert.Equal(VSphereSeeds.Sha256(evidence.LocalPath!), evidence.Sha256); // == downloaded
        }
        Assert.Equal(VSphereSeeds.Sha256(vmem), manifest.Evidence[1].Sha256);
        Assert.Equal(new FileInfo(vmem).Length, manifest.Evidence[1].SizeBytes);
        Assert.Contains(manifest.Steps, s => s.Action == "connect" && s.Detail.Contains("over soap", StringComparison.Ordinal));
        Assert.Contains(manifest.Steps, s => s.Action == "locate files" && s.Detail.Contains("memoryKey", StringComparison.Ordinal));
        string[] order = [.. manifest.Steps.Select(s => s.Action).Where(a => a is "CreateSnapshot_Task" or "download" or "verify evidence" or "RemoveSnapshot_Task")];
        Assert.Equal(["CreateSnapshot_Task", "download", "download", "verify evidence", "verify evidence", "RemoveSnapshot_Task"], order);
        Assert.Contains(manifest.Resources, r => r.Kind == "snapshot");
        Assert.Equal("user", manifest.Operator!.Identity);
        Assert.Equal(0, await SnapshotCountAsync(vcsim.Url, "DC0_H0_VM0"));
        Assert.Empty(vcsim.SnapshotFiles());
        AssertNoSecret(manifest);

        // The copy opens with the CLI: .vmsn with the .vmem beside it.
        (int exit, string stdout, string stderr) = CliRunner.Run(null, null, "info", manifest.Evidence[0].LocalPath!, "--output", "json");
        Assert.True(exit == 0, stderr);
        using JsonDocument info = JsonDocument.Parse(stdout);
        Assert.Contains("VMware", stdout, StringComparison.Ordinal);
        Assert.Contains("Linux version", stdout, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Soap_capture_finds_the_vmem_beside_the_vmsn_when_layoutEx_has_no_memoryKey()
    {
        (string vmsn, string vmem) = VSphereSeeds.Get(sliceBytes: 32 << 20);
        using var vcsim = new VcsimProcess(vmsn, vmem, memoryKey: false);
        (VSphereCapture capture, _) = Make(vcsim.Url, "/DC0/vm/DC0_H0_VM1", VSphereTransport.Soap, verify: VSphereVerify.Local);

        CaptureResult result = await capture.CaptureAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        Assert.Equal(VSphereSeeds.Sha256(vmem), result.Manifest.Evidence.Single(e => e.Name.EndsWith(".vmem", StringComparison.Ordinal)).Sha256);
        Assert.Contains(result.Manifest.Steps, s => s.Action == "locate files" && s.Detail.Contains("memoryKey is -1", StringComparison.Ordinal));
        Assert.Empty(vcsim.SnapshotFiles());
    }

    [SkippableFact]
    public async Task A_connection_dropped_mid_download_resumes_with_Range_and_the_evidence_is_intact()
    {
        (string vmsn, string vmem) = VSphereSeeds.Get(sliceBytes: 64 << 20);
        using var vcsim = new VcsimProcess(vmsn, vmem);
        using var proxy = new FaultProxy(vcsim.Url, ProxyFault.CutOnce, at: 20L << 20);
        (VSphereCapture capture, _) = Make(proxy.Url, "DC0_H0_VM0", VSphereTransport.Soap);

        CaptureResult result = await capture.CaptureAsync(CancellationToken.None);

        Assert.Equal(1, proxy.Fired);
        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        EvidenceRecord memory = result.Manifest.Evidence.Single(e => e.Name.EndsWith(".vmem", StringComparison.Ordinal));
        Assert.Equal(VSphereSeeds.Sha256(vmem), memory.Sha256);
        Assert.Equal(VSphereSeeds.Sha256(vmem), VSphereSeeds.Sha256(memory.LocalPath!));
        Assert.Contains(result.Manifest.Steps, s => s.Action == "download" && s.Detail.Contains("1 resume(s)", StringComparison.Ordinal));
        Assert.Contains("resuming with Range bytes=", _logText.ToString(), StringComparison.Ordinal);
        Assert.Empty(vcsim.SnapshotFiles());
    }

    [SkippableFact]
    public async Task A_byte_corrupted_in_transit_is_a_hash_mismatch_the_capture_fails_and_the_snapshot_is_removed()
    {
        (string vmsn, string vmem) = VSphereSeeds.Get(sliceBytes: 32 << 20);
        using var vcsim = new VcsimProcess(vmsn, vmem);
        using var proxy = new FaultProxy(vcsim.Url, ProxyFault.CorruptOnce, at: 8L << 20);
        (VSphereCapture capture, _) = Make(proxy.Url, "DC0_H0_VM0", VSphereTransport.Soap);

        var error = await Assert.ThrowsAsync<CaptureException>(() => capture.CaptureAsync(CancellationToken.None));

        Assert.Contains("not verified", error.Message, StringComparison.Ordinal);
        Assert.Contains("differs", error.Message, StringComparison.Ordinal);
        CustodyManifest manifest = CustodyManifest.Read(Directory.EnumerateFiles(_out, "*.custody.json").Single());
        Assert.Equal(CustodyStatus.Failed, manifest.Status);
        Assert.Contains(manifest.Evidence, e => !e.Verified);
        Assert.Contains(manifest.Steps, s => s.Action == "RemoveSnapshot_Task");
        Assert.Equal(0, await SnapshotCountAsync(vcsim.Url, "DC0_H0_VM0"));
        Assert.Empty(vcsim.SnapshotFiles());
        AssertNoSecret(manifest);
    }

    [SkippableFact]
    public async Task A_download_that_keeps_failing_fails_the_capture_and_the_snapshot_is_still_removed()
    {
        (string vmsn, string vmem) = VSphereSeeds.Get(sliceBytes: 32 << 20);
        using var vcsim = new VcsimProcess(vmsn, vmem);
        using var proxy = new FaultProxy(vcsim.Url, ProxyFault.CutAlways, at: 4L << 20);
        (VSphereCapture capture, _) = Make(proxy.Url, "DC0_H0_VM0", VSphereTransport.Soap,
            download: new DownloadPolicy { MaxRetries = 2, RetryDelay = TimeSpan.FromMilliseconds(20) });

        var error = await Assert.ThrowsAsync<CaptureException>(() => capture.CaptureAsync(CancellationToken.None));

        Assert.Contains("download of [LocalDS_0]", error.Message, StringComparison.Ordinal);
        Assert.Contains("after 2 retries", error.Message, StringComparison.Ordinal);
        CustodyManifest manifest = CustodyManifest.Read(Directory.EnumerateFiles(_out, "*.custody.json").Single());
        Assert.Equal(CustodyStatus.Failed, manifest.Status);
        Assert.Contains(manifest.Steps, s => s.Action == "RemoveSnapshot_Task");
        Assert.Empty(Directory.EnumerateFiles(_out, "*.partial"));
        Assert.Equal(0, await SnapshotCountAsync(vcsim.Url, "DC0_H0_VM0"));
        Assert.Empty(vcsim.SnapshotFiles());
    }

    [SkippableFact]
    public async Task Keep_snapshot_leaves_it_and_says_so()
    {
        (string vmsn, string vmem) = VSphereSeeds.Get(sliceBytes: 16 << 20);
        using var vcsim = new VcsimProcess(vmsn, vmem);
        (VSphereCapture capture, _) = Make(vcsim.Url, "DC0_H0_VM0", VSphereTransport.Soap, keep: true);

        CaptureResult result = await capture.CaptureAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        Assert.Contains(result.Manifest.Steps, s => s.Action == "keep snapshot");
        Assert.Equal(1, await SnapshotCountAsync(vcsim.Url, "DC0_H0_VM0"));
        // What is stored equals what the manifest says.
        Assert.Equal(result.Manifest.Evidence.Select(e => e.Sha256).Order(), vcsim.SnapshotFiles().Select(VSphereSeeds.Sha256).Order());
    }

    [SkippableFact]
    public async Task ViJson_capture_speaks_the_session_header_and_verifies()
    {
        (string vmsn, string vmem) = VSphereSeeds.Get(sliceBytes: 16 << 20);
        using var server = new FakeViJsonServer("admin", Password, vmsn, vmem);
        (VSphereCapture capture, _) = Make(server.Url, "web01", VSphereTransport.Auto, user: "admin");

        CaptureResult result = await capture.CaptureAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        Assert.All(result.Manifest.Evidence, e => Assert.True(e.Verified, e.Problem));
        Assert.Equal(VSphereSeeds.Sha256(vmem), result.Manifest.Evidence[1].Sha256);
        Assert.Contains(result.Manifest.Steps, s => s.Action == "connect" && s.Detail.Contains("vi-json", StringComparison.Ordinal));
        Assert.Equal("VSPHERE.LOCAL\\admin", result.Manifest.Operator!.Identity);
        Assert.Empty(server.Snapshots);
        IReadOnlyList<string> requests = server.Requests;
        int create = IndexOf(requests, "/CreateSnapshot_Task");
        int download = IndexOf(requests, "/folder/web01/web01-Snapshot1.vmem");
        int remove = IndexOf(requests, "/RemoveSnapshot_Task");
        Assert.True(create < download && download < remove, string.Join(", ", requests));
        Assert.EndsWith("/Logout", requests[^1], StringComparison.Ordinal);
        Assert.Single(server.Bodies, b => b.Contains(Password, StringComparison.Ordinal)); // only the Login body
        AssertNoSecret(result.Manifest);
    }

    [SkippableFact]
    public async Task A_snapshot_task_that_never_finishes_times_out_clearly_and_the_snapshot_it_made_is_removed()
    {
        (string vmsn, string vmem) = VSphereSeeds.Get(sliceBytes: 16 << 20);
        using var server = new FakeViJsonServer("admin", Password, vmsn, vmem) { CreateNeverFinishes = true };
        (VSphereCapture capture, _) = Make(server.Url, "DC1/vm/web01", VSphereTransport.ViJson, user: "admin", operation: TimeSpan.FromSeconds(1));

        var error = await Assert.ThrowsAsync<CaptureTimeoutException>(() => capture.CaptureAsync(CancellationToken.None));

        Assert.StartsWith("vSphere CreateSnapshot_Task (task task-", error.Message, StringComparison.Ordinal);
        Assert.Contains("did not finish within 1 s (last state: Running 42%)", error.Message, StringComparison.Ordinal);
        Assert.Empty(server.Snapshots); // found by its name and removed
        CustodyManifest manifest = CustodyManifest.Read(Directory.EnumerateFiles(_out, "*.custody.json").Single());
        Assert.Equal(CustodyStatus.Failed, manifest.Status);
        Assert.Contains("did not finish", manifest.Error, StringComparison.Ordinal);
        Assert.Contains(manifest.Steps, s => s.Action == "RemoveSnapshot_Task");
        AssertNoSecret(manifest);
    }

    [SkippableFact]
    public async Task A_wrong_password_fails_in_one_line_without_echoing_it()
    {
        (string vmsn, string vmem) = VSphereSeeds.Get(sliceBytes: 16 << 20);
        using var server = new FakeViJsonServer("admin", "another-password", vmsn, vmem);
        (VSphereCapture capture, _) = Make(server.Url, "web01", VSphereTransport.ViJson, user: "admin");

        var error = await Assert.ThrowsAsync<CaptureException>(() => capture.CaptureAsync(CancellationToken.None));

        Assert.Contains("InvalidLogin", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(Password, error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(server.Requests, r => r.Contains("CreateSnapshot", StringComparison.Ordinal));
    }

    [SkippableFact]
    public async Task Tls_is_validated_by_default_and_a_pinned_thumbprint_is_accepted()
    {
        (string vmsn, string vmem) = VSphereSeeds.Get(sliceBytes: 16 << 20);
        using var vcsim = new VcsimProcess(vmsn, vmem, tls: true);
        (VSphereCapture strict, _) = Make(vcsim.Url, "DC0_H0_VM0", VSphereTransport.Soap);
        var refused = await Assert.ThrowsAsync<CaptureException>(() => strict.PlanAsync(CancellationToken.None).ContinueWith(t => t.Result.ThrowIfNotReady()));
        Assert.Contains("not trusted", refused.Message, StringComparison.Ordinal);

        var log = new CaptureLog(new SecretScrubber(), _logText);
        var pinned = new VSphereCapture(
            new VSphereCaptureOptions { Server = vcsim.Url, Vm = "DC0_H0_VM0", PinnedThumbprint = vcsim.Thumbprint, Transport = VSphereTransport.Soap },
            new NetworkCredential("user", Password), new CaptureRequest { OutputDirectory = _out }, log, CaptureCli.ParserOpener);
        CapturePlan plan = await pinned.PlanAsync(CancellationToken.None);
        Assert.True(plan.Ready, plan.ToText());
        Assert.Contains(plan.Checks, c => c.Name == "power state" && c.Reason == "poweredOn");
        Assert.Empty(vcsim.SnapshotFiles()); // the plan changed nothing
    }

    [SkippableFact]
    public void Cli_plan_and_missing_credentials()
    {
        (string vmsn, string vmem) = VSphereSeeds.Get(sliceBytes: 16 << 20);
        using var vcsim = new VcsimProcess(vmsn, vmem);
        var environment = new Dictionary<string, string> { ["CLOUDMEM_VSPHERE_USER"] = "user", ["CLOUDMEM_VSPHERE_PASSWORD"] = Password };
        (int exit, string stdout, string stderr) = CliRunner.Run(environment, null, "capture", "vsphere", "DC0_H0_VM0", "--server", vcsim.Url.ToString(), "--plan", "--out", _out);
        Assert.True(exit == 0, stderr + stdout);
        Assert.Contains("[ok] power state: poweredOn", stdout, StringComparison.Ordinal);
        Assert.Contains("RemoveSnapshot_Task", stdout, StringComparison.Ordinal);
        Assert.DoesNotContain(Password, stdout + stderr, StringComparison.Ordinal);
        Assert.Empty(vcsim.SnapshotFiles());

        (exit, _, stderr) = CliRunner.Run(new Dictionary<string, string> { ["CLOUDMEM_VSPHERE_USER"] = "", ["CLOUDMEM_VSPHERE_PASSWORD"] = "" }, null,
            "capture", "vsphere", "vm-1", "--server", vcsim.Url.ToString());
        Assert.Equal(2, exit);
        Assert.Contains("set CLOUDMEM_VSPHERE_USER and CLOUDMEM_VSPHERE_PASSWORD", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Snapshot_files_are_found_from_layoutEx_keys_or_beside_the_vmsn()
    {
        var snapshot = new MoRef("VirtualMachineSnapshot", "snapshot-9");
        var withKey = new VmLayout(
            [new LayoutFile(1, "[ds] vm/vm-Snapshot3.vmsn", "snapshotData", 100), new LayoutFile(2, "[ds] vm/vm-Snapshot3.vmem", "snapshotMemory", 4096)],
            [new LayoutSnapshot(snapshot, 1, 2)]);
        SnapshotFiles files = SnapshotFiles.Locate(withKey, snapshot);
        Assert.Equal("vm/vm-Snapshot3.vmem", files.Memory!.Path.Path);
        Assert.False(files.Memory.Optional);

        SnapshotFiles sibling = SnapshotFiles.Locate(withKey with { Snapshots = [new LayoutSnapshot(snapshot, 1, -1)] }, snapshot);
        Assert.Equal(new DatastorePath("ds", "vm/vm-Snapshot3.vmem"), sibling.Memory!.Path);
        Assert.True(sibling.Memory.Optional);

        Assert.Contains("lists no files for snapshot snapshot-1", Assert.Throws<CaptureException>(() => SnapshotFiles.Locate(withKey, snapshot with { Value = "snapshot-1" })).Message, StringComparison.Ordinal);
        Assert.Contains("key 7", Assert.Throws<CaptureException>(() => SnapshotFiles.Locate(withKey with { Snapshots = [new LayoutSnapshot(snapshot, 7, -1)] }, snapshot)).Message, StringComparison.Ordinal);
        Assert.Throws<CaptureException>(() => DatastorePath.Parse("no brackets"));
        Assert.True(VmLocator.IsMoRef("vm-42"));
        Assert.True(VmLocator.IsMoRef("12"));
        Assert.False(VmLocator.IsMoRef("vm-web"));
        Assert.Equal("AABB" + new string('0', 60), VSphereHttp.NormalizeThumbprint("aa:bb:" + string.Join(":", Enumerable.Repeat("00", 30))));
        Assert.Throws<CaptureException>(() => VSphereHttp.NormalizeThumbprint("abc"));
    }

    private static int IndexOf(IReadOnlyList<string> requests, string suffix)
    {
        for (int i = 0; i < requests.Count; i++)
        {
            if (requests[i].EndsWith(suffix, StringComparison.Ordinal))
            {
                return i;
            }
        }
        return -1;
    }

    /// <summary>Progress reported synchronously (Progress&lt;T&gt; would post to the thread pool).</summary>
    private sealed class SyncProgress(Action<TransferProgress> report) : IProgress<TransferProgress>
    {
        public void Report(TransferProgress value) => report(value);
    }
}
