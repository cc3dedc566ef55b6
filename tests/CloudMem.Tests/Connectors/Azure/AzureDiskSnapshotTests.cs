using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Azure.Data.Tables;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;
using CloudMem.Tests.Support;
using DurableTask.Core;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// The durable workflow's managed-disk snapshots on the real Durable Task Framework (azurite's queues, tables and
/// blobs) and the real Compute SDK against the fake ARM: each disk is snapshotted once however often the alert is
/// delivered and the step re-run, the forensic copies likewise, and the manifest lists every snapshot id.
/// </summary>
public sealed class AzureDiskSnapshotTests(DurableAzurite azurite) : IClassFixture<DurableAzurite>
{
    private const string Forensic = "0f0e0d0c-0b0a-4009-8807-060504030201";

    private static List<ArmCall> SnapshotPuts(AzureTestBed bed)
        => [.. bed.Arm.Calls.Where(c => c.Method == "PUT" && c.Path.Contains("/providers/Microsoft.Compute/snapshots/", StringComparison.Ordinal))];

    private static JsonNode Properties(ArmCall put) => JsonNode.Parse(put.Body)!["properties"]!;

    /// <summary>Runs one alert through the durable workflow (delivered twice at once); returns the orchestration's output and instance id.</summary>
    private async Task<(JsonNode Output, string InstanceId, string AlertId)> RunAsync(AzureTestBed bed, bool diskSnapshots = true,
        AzureForensicTarget? forensic = null, Func<string, CancellationToken, Task>? afterCreate = null)
    {
        AzuriteHost host = azurite.Host;
        var ledger = new TableCaptureLedger(new TableServiceClient(host.ConnectionString).GetTableClient(DurableAzurite.Unique("captures")), bed.Log);
        await ledger.CreateIfNotExistsAsync(CancellationToken.None);
        var target = new AzureResponderTarget(bed.ContainerUrl, () => bed.Credential, host.Credential, bed.ArmSettings,
            bed.ToolFile, "0.14.0 (test stand-in)", CloudMem.Cli.Commands.CaptureCli.ParserOpener, host.ClientOptions());
        var steps = new AzureWorkflowSteps(new TriggerPolicy(), target, ledger, bed.Log)
        {
            OutputDirectory = bed.OutDir,
            Timeouts = new CaptureTimeouts { Command = TimeSpan.FromMinutes(3), Operation = TimeSpan.FromMinutes(1), PollInterval = TimeSpan.FromMilliseconds(200) },
            DiskSnapshots = diskSnapshots,
            ForensicTarget = forensic,
            AfterSnapshotCreate = afterCreate,
        };
        var hub = new DurableCaptureHub(host.ConnectionString, DurableAzurite.Unique("hub"), bed.Log, DurableAzurite.Fast);
        await hub.CreateIfNotExistsAsync();
        byte[] alert = Encoding.UTF8.GetBytes(DurableAzurite.Alert(bed));
        DurableStart[] starts = await Task.WhenAll(
            hub.StartAsync(alert, new TriggerPolicy(), TimeSpan.FromSeconds(1), ledger, CancellationToken.None),
            hub.StartAsync(alert, new TriggerPolicy(), TimeSpan.FromSeconds(1), ledger, CancellationToken.None));
        DurableStart started = Assert.Single(starts, s => s.Status == DurableStartStatus.Started);

        using var stop = new CancellationTokenSource();
        Task worker = hub.RunWorkerAsync(steps, stop.Token);
        OrchestrationState? state = await hub.WaitAsync(started.InstanceId!, TimeSpan.FromMinutes(4), CancellationToken.None);
        stop.Cancel();
        await worker;
        Assert.NotNull(state);
        Assert.True(state.OrchestrationStatus == OrchestrationStatus.Completed, $"{state.OrchestrationStatus}: {state.Output}\n{bed.LogText}");
        return (JsonNode.Parse(JsonSerializer.Deserialize<string>(state.Output)!)!, started.InstanceId!, AlertEventParser.Parse(alert).Id);
    }

    [SkippableFact]
    public async Task DuplicatedDeliveryAndARetriedStep_SnapshotEveryDiskOnce_CopyEachOnce_AndTheManifestListsThem()
    {
        await using var bed = new AzureTestBed(azurite.Host, Fixture.Require("memory.avml"));
        string vmGroup = bed.VmId[..bed.VmId.IndexOf("/providers/", StringComparison.Ordinal)];
        string[] disks = [$"{vmGroup}/providers/Microsoft.Compute/disks/vm1-osdisk", bed.Arm.AddDataDisk(bed.VmId, "vm1-data0", 0), bed.Arm.AddDataDisk(bed.VmId, "vm1-data1", 1)];
        int created = 0;

        // The first attempt is lost right after ARM accepted its first PUT, before the snapshot id was saved.
        (JsonNode output, string instanceId, string alertId) = await RunAsync(bed, forensic: new AzureForensicTarget(Forensic, "rg-forensic"),
            afterCreate: (_, _) => Interlocked.Increment(ref created) == 1 ? throw new CaptureException("test: worker lost after the snapshot PUT") : Task.CompletedTask);

        Assert.Equal("Captured", (string?)output["status"]);
        Assert.Single(bed.Arm.Scripts);
        List<ArmCall> puts = SnapshotPuts(bed);
        // Exactly one PUT per snapshot: three of the VM's disks, three copies in the forensic subscription.
        Assert.Equal(6, puts.Count);
        Assert.All(puts.GroupBy(p => p.Path, StringComparer.OrdinalIgnoreCase), g => Assert.Single(g));
        var sources = puts.Where(p => p.Path.StartsWith(vmGroup, StringComparison.Ordinal)).ToList();
        Assert.Equal(disks.Order(), sources.Select(p => (string)Properties(p)["creationData"]!["sourceResourceId"]!).Order());
        foreach (ArmCall put in sources)
        {
            JsonNode properties = Properties(put);
            Assert.Equal("Copy", (string?)properties["creationData"]!["createOption"]);
            Assert.True((bool)properties["incremental"]!);
            JsonNode tags = JsonNode.Parse(put.Body)!["tags"]!;
            Assert.Equal(instanceId, (string?)tags["cloudmem-capture"]);
            Assert.Equal(alertId, (string?)tags["cloudmem-alert"]);
            Assert.Equal("vm1", (string?)tags["cloudmem-source-vm"]);
            string disk = (string)properties["creationData"]!["sourceResourceId"]!;
            Assert.EndsWith("/" + AzureDiskSnapshots.Name(instanceId, disk, disk[(disk.LastIndexOf('/') + 1)..]), put.Path, StringComparison.Ordinal);
        }
        var copies = puts.Except(sources).ToList();
        Assert.All(copies, c => Assert.StartsWith($"/subscriptions/{Forensic}/resourceGroups/rg-forensic/providers/Microsoft.Compute/snapshots/", c.Path, StringComparison.Ordinal));
        Assert.Equal(sources.Select(s => s.Path).Order(), copies.Select(c => (string)Properties(c)["creationData"]!["sourceResourceId"]!).Order());
        Assert.All(copies, c => Assert.Equal("Copy", (string?)Properties(c)["creationData"]!["createOption"]));

        CustodyManifest manifest = CustodyManifest.Read((string)output["manifest"]!);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        Assert.Equal(sources.Select(s => s.Path).Order(), manifest.Resources.Where(r => r.Kind == "managed-disk-snapshot").Select(r => r.Id).Order());
        Assert.Equal(copies.Select(s => s.Path).Order(), manifest.Resources.Where(r => r.Kind == "managed-disk-snapshot-copy").Select(r => r.Id).Order());
        Assert.Contains(manifest.Resources, r => r.Kind == "managed-disk-snapshot" && r.Detail.Contains("(OS disk), incremental", StringComparison.Ordinal) && r.Detail.Contains("Succeeded", StringComparison.Ordinal));
        // The lost attempt is on record; the retry found its snapshot by name and reused it.
        Assert.Contains(manifest.Steps, s => s.Action == "workflow" && s.Detail.StartsWith("snapshots attempt 2", StringComparison.Ordinal));
        Assert.Contains(manifest.Steps, s => s.Action == "disk snapshot" && s.Detail.Contains("exists from an earlier attempt", StringComparison.Ordinal));
        Assert.Contains(manifest.Steps, s => s.Detail.Contains("test: worker lost after the snapshot PUT", StringComparison.Ordinal));
        Assert.Single(manifest.Steps, s => s.Action == "disk snapshots");
    }

    [SkippableFact]
    public async Task OptedOut_NoSnapshotIsTaken_AndTheManifestSaysSo()
    {
        await using var bed = new AzureTestBed(azurite.Host, Fixture.Require("memory.avml"));

        (JsonNode output, _, _) = await RunAsync(bed, diskSnapshots: false);

        Assert.Equal("Captured", (string?)output["status"]);
        Assert.Empty(SnapshotPuts(bed));
        CustodyManifest manifest = CustodyManifest.Read((string)output["manifest"]!);
        Assert.Contains(manifest.Steps, s => s.Action == "disk snapshots" && s.Detail.StartsWith("skipped", StringComparison.Ordinal));
        Assert.DoesNotContain(manifest.Resources, r => r.Kind.StartsWith("managed-disk-snapshot", StringComparison.Ordinal));
    }

    [SkippableFact]
    public async Task CopyToAnotherRegion_UsesCopyStart_AndRunsWithSavedOrLostStateCreateNothingMore()
    {
        await using var bed = new AzureTestBed(azurite.Host, "/nonexistent/evidence");
        bed.Arm.AddDataDisk(bed.VmId, "vm1-data0", 0);
        var connector = bed.Connector(bed.Request());
        var recorder = new CustodyRecorder("azure", bed.VmId, "runcommand-durable", bed.Request(), bed.Log);
        var done = new Dictionary<string, string>();
        var copies = new Dictionary<string, string>();
        var forensic = new AzureForensicTarget(Forensic, "rg-forensic", "northeurope");
        int saves = 0;
        Task Save(CancellationToken _)
        {
            saves++;
            return Task.CompletedTask;
        }

        await connector.SnapshotDisksAsync(recorder, "capture-1", "alert-1", done, copies, forensic, Save, null, CancellationToken.None);

        Assert.Equal(2, done.Count);
        Assert.Equal(2, copies.Count);
        Assert.Equal(4, saves);
        List<ArmCall> puts = SnapshotPuts(bed);
        var copyPuts = puts.Where(p => p.Path.StartsWith($"/subscriptions/{Forensic}/", StringComparison.Ordinal)).ToList();
        Assert.Equal(2, copyPuts.Count);
        Assert.All(copyPuts, c =>
        {
            Assert.Equal("CopyStart", (string?)Properties(c)["creationData"]!["createOption"]);
            Assert.True((bool)Properties(c)["incremental"]!);
            Assert.Equal("northeurope", (string?)JsonNode.Parse(c.Body)!["location"]);
        });
        Assert.All(recorder.Build().Resources.Where(r => r.Kind == "managed-disk-snapshot-copy"), r => Assert.Contains("background copy 42.5%", r.Detail, StringComparison.Ordinal));

        // Again with the saved state, then with the state lost: the snapshots are found, none is made twice.
        await connector.SnapshotDisksAsync(recorder, "capture-1", "alert-1", done, copies, forensic, Save, null, CancellationToken.None);
        var lostDone = new Dictionary<string, string>();
        var lostCopies = new Dictionary<string, string>();
        await connector.SnapshotDisksAsync(recorder, "capture-1", "alert-1", lostDone, lostCopies, forensic, Save, null, CancellationToken.None);
        Assert.Equal(puts.Count, SnapshotPuts(bed).Count);
        Assert.Equal(done, lostDone);
        Assert.Equal(copies, lostCopies);
        Assert.Equal(4, recorder.Build().Resources.Count);

        // A snapshot of that name made for another capture is refused, never overwritten.
        CaptureException clash = await Assert.ThrowsAsync<CaptureException>(() => connector.SnapshotDisksAsync(
            new CustodyRecorder("azure", bed.VmId, "runcommand-durable", bed.Request(), bed.Log), "capture-2", "alert-2", new Dictionary<string, string>(done), new Dictionary<string, string>(), null, Save, null, CancellationToken.None));
        Assert.Contains("exists already for capture capture-1", clash.Message, StringComparison.Ordinal);
        Assert.Equal(puts.Count, SnapshotPuts(bed).Count);
        // Every ARM request is one the capture role allows for disk snapshots.
        Assert.All(bed.Arm.Calls, c => Assert.True(AzureCapturePermissions.For("arm", c.Method, c.Path, AzureCapturePermissions.DiskSnapshots) is not null, $"{c.Method} {c.Path}: not in AzureCapturePermissions.DiskSnapshots"));
    }
}
