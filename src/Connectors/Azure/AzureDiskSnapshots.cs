using System.Security.Cryptography;
using System.Text;
using Azure.Core;
using Azure.ResourceManager;
using Azure.ResourceManager.Compute;
using Azure.ResourceManager.Compute.Models;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Azure;

/// <summary>Where the disk snapshots are copied for custody: a resource group of a forensic subscription (and region).</summary>
/// <param name="SubscriptionId">The forensic subscription.</param>
/// <param name="ResourceGroup">Its resource group receiving the copies.</param>
/// <param name="Location">Region of the copies; null = the VM's (a copy in another region uses CopyStart).</param>
public sealed record AzureForensicTarget(string SubscriptionId, string ResourceGroup, string? Location = null);

/// <summary>
/// Disk evidence beside the memory capture (the durable workflow's <c>snapshots</c> step; the Azure twin of
/// <c>AwsDiskSnapshots</c>): one incremental snapshot (createOption Copy, sourceResourceId the disk) of the OS disk and
/// of every managed data disk, in the VM's resource group, tagged cloudmem-case, cloudmem-alert, cloudmem-capture
/// (the orchestration instance) and cloudmem-source-vm / cloudmem-source-disk, each recorded in the manifest (snapshot
/// id, disk, size, creation time, provisioning state). Names are derived from the capture and the disk, so a step run
/// again (a retried activity, a replayed orchestration, a worker killed between the PUT and the save) finds the
/// snapshot an earlier attempt made (saved state first, then GET by name) and reuses it: no disk is snapshotted twice,
/// and an existing snapshot of that name made for anything else is refused, never overwritten. With a forensic target,
/// each completed snapshot is then copied into the forensic subscription's resource group (incremental, Copy in the
/// same region, CopyStart across regions, whose data then copies in the background), with the same idempotence.
/// </summary>
internal static class AzureDiskSnapshots
{
    /// <summary>Most data disks snapshotted for one VM (Azure allows at most 64 per VM).</summary>
    public const int MaxDataDisks = 64;

    /// <summary>The longest snapshot name Azure accepts.</summary>
    public const int MaxNameLength = 80;

    /// <summary>What every snapshot of one capture shares.</summary>
    public sealed record Context(AzureArm Arm, CustodyRecorder Recorder, string CaptureId, IReadOnlyDictionary<string, string> Tags,
        TimeSpan PollInterval, TimeSpan Timeout)
    {
        /// <summary>Test seam: runs after a snapshot's PUT was accepted and before its id is saved (a test kills the step there).</summary>
        public Func<string, CancellationToken, Task>? AfterCreate { get; init; }
    }

    /// <summary>
    /// Snapshots the OS disk and every managed data disk of <paramref name="facts"/>' VM; <paramref name="done"/> (disk id
    /// to snapshot id) and <paramref name="copies"/> (snapshot id to forensic copy id) are the saved state, updated and
    /// saved (<paramref name="save"/>) as soon as each resource is accepted.
    /// </summary>
    public static async Task SnapshotDisksAsync(Context context, AzureVmFacts facts, IDictionary<string, string> done, IDictionary<string, string> copies,
        AzureForensicTarget? forensic, Func<CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        if (facts.DataDisks.Count > MaxDataDisks)
        {
            throw new CaptureException($"disk snapshots: {facts.Name} reports {facts.DataDisks.Count} data disks, more than {MaxDataDisks}");
        }
        var disks = new List<(string Id, string Name, string Role)>();
        if (facts.OsDiskId is not null)
        {
            disks.Add((facts.OsDiskId, new ResourceIdentifier(facts.OsDiskId).Name, "OS disk"));
        }
        disks.AddRange(facts.DataDisks.OrderBy(d => d.Lun).Select(d => (d.Id, d.Name, $"data disk LUN {d.Lun}")));
        ResourceIdentifier vm = new(facts.Id);
        foreach ((string diskId, string diskName, string role) in disks)
        {
            var tags = new Dictionary<string, string>(context.Tags) { ["cloudmem-source-disk"] = diskName };
            ResourceIdentifier id = done.TryGetValue(diskId, out string? saved)
                ? new ResourceIdentifier(saved)
                : SnapshotResource.CreateResourceIdentifier(vm.SubscriptionId!, vm.ResourceGroupName!, Name(context.CaptureId, diskId, diskName));
            SnapshotData snapshot = await EnsureAsync(context, id, new AzureSnapshotSource(diskId, DiskCreateOption.Copy, Incremental: true), facts.Location, tags,
                async token =>
                {
                    done[diskId] = id.ToString();
                    await save(token).ConfigureAwait(false);
                }, cancellationToken).ConfigureAwait(false);
            Record(context.Recorder, "managed-disk-snapshot", id, $"of {diskId} ({role}), incremental", snapshot);
        }
        if (forensic is not null)
        {
            string location = forensic.Location ?? facts.Location;
            bool crossRegion = !string.Equals(location, facts.Location, StringComparison.OrdinalIgnoreCase);
            foreach ((string diskId, _, _) in disks)
            {
                var source = new ResourceIdentifier(done[diskId]);
                ResourceIdentifier copy = copies.TryGetValue(source.ToString(), out string? saved)
                    ? new ResourceIdentifier(saved)
                    : SnapshotResource.CreateResourceIdentifier(forensic.SubscriptionId, forensic.ResourceGroup, source.Name);
                DiskCreateOption option = crossRegion ? DiskCreateOption.CopyStart : DiskCreateOption.Copy;
                SnapshotData copied = await EnsureAsync(context, copy, new AzureSnapshotSource(source.ToString(), option, Incremental: true), location,
                    new Dictionary<string, string>(context.Tags) { ["cloudmem-source-snapshot"] = source.ToString() },
                    async token =>
                    {
                        copies[source.ToString()] = copy.ToString();
                        await save(token).ConfigureAwait(false);
                    }, cancellationToken).ConfigureAwait(false);
                string background = option == DiskCreateOption.CopyStart
                    ? $", background copy {copied.CompletionPercent?.ToString("0.#", System.Globalization.CultureInfo.InvariantCulture) ?? "?"}% (CopyStart: check completionPercent before use)"
                    : "";
                Record(context.Recorder, "managed-disk-snapshot-copy", copy,
                    $"copy of {source} in forensic subscription {forensic.SubscriptionId}, resource group {forensic.ResourceGroup}, {location} (createOption {option}){background}", copied);
            }
        }
        context.Recorder.Step("disk snapshots", disks.Count == 0
            ? $"{facts.Name} has no managed disk"
            : string.Join(", ", disks.Select(d => $"{d.Name} -> {new ResourceIdentifier(done[d.Id]).Name}{(copies.TryGetValue(done[d.Id], out string? c) ? $" (copied to {new ResourceIdentifier(c).SubscriptionId}/{new ResourceIdentifier(c).ResourceGroupName})" : "")}")));
    }

    /// <summary>
    /// The snapshot <paramref name="id"/> of <paramref name="source"/>, provisioned: an existing one (made by an earlier
    /// attempt of this capture: same cloudmem-capture tag and source) is reused and polled by GET; otherwise it is
    /// created (<paramref name="created"/> runs once ARM accepted the PUT) and its operation polled.
    /// </summary>
    /// <exception cref="CaptureException">a snapshot of that name exists for another capture or source, or provisioning failed.</exception>
    public static async Task<SnapshotData> EnsureAsync(Context context, ResourceIdentifier id, AzureSnapshotSource source, string location,
        IReadOnlyDictionary<string, string> tags, Func<CancellationToken, Task> created, CancellationToken cancellationToken)
    {
        SnapshotData? existing = await context.Arm.GetSnapshotAsync(id, cancellationToken).ConfigureAwait(false);
        if (existing is not null)
        {
            string? owner = existing.Tags.TryGetValue("cloudmem-capture", out string? tag) ? tag : null;
            string? from = existing.CreationData?.SourceResourceId?.ToString();
            if (owner != context.CaptureId || !string.Equals(from, source.SourceId, StringComparison.OrdinalIgnoreCase))
            {
                throw new CaptureException($"snapshot {id} exists already for {(owner is null ? "no cloudmem capture" : $"capture {owner}")} of {from ?? "an unknown source"}: not overwritten");
            }
            await created(cancellationToken).ConfigureAwait(false);
            context.Recorder.Step("disk snapshot", $"{id.Name} of {source.SourceId} exists from an earlier attempt ({existing.ProvisioningState}): reused, not created again");
            return await Resilience.PollUntilAsync($"snapshot {id.Name}", async token =>
            {
                SnapshotData now = await context.Arm.GetSnapshotAsync(id, token).ConfigureAwait(false)
                    ?? throw new CaptureException($"snapshot {id} disappeared while it was provisioned");
                return now.ProvisioningState switch
                {
                    "Succeeded" => PollState<SnapshotData>.Finished("Succeeded", now),
                    "Failed" or "Canceled" => throw new CaptureException($"snapshot {id} ended in provisioningState {now.ProvisioningState}"),
                    _ => PollState<SnapshotData>.Pending(now.ProvisioningState ?? "unknown"),
                };
            }, context.PollInterval, context.Timeout, cancellationToken).ConfigureAwait(false);
        }
        ArmOperation<SnapshotResource> operation = await context.Arm.StartSnapshotAsync(id, source, location, tags, cancellationToken).ConfigureAwait(false);
        if (context.AfterCreate is { } hook)
        {
            await hook(id.ToString(), cancellationToken).ConfigureAwait(false);
        }
        await created(cancellationToken).ConfigureAwait(false);
        context.Recorder.Step("disk snapshot", $"PUT {id.Name} (createOption {source.CreateOption}, incremental {source.Incremental.ToString().ToLowerInvariant()}) of {source.SourceId} accepted");
        SnapshotResource done = await AzureArm.CompleteAsync(operation, $"snapshot {id.Name}", context.PollInterval, context.Timeout, cancellationToken).ConfigureAwait(false);
        return done.Data;
    }

    /// <summary>
    /// The snapshot name of a disk in a capture: <c>cloudmem-{disk}-{12 hex}</c>, the hex from the SHA-256 of capture id
    /// and disk id (the same on every attempt), the disk name cut and reduced to the characters Azure allows.
    /// </summary>
    public static string Name(string captureId, string diskId, string diskName)
    {
        string hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes($"{captureId}\n{diskId.ToLowerInvariant()}")))[..12];
        var safe = new StringBuilder(diskName.Length);
        foreach (char c in diskName)
        {
            safe.Append(char.IsAsciiLetterOrDigit(c) || c is '_' or '-' ? c : '-');
        }
        string disk = safe.ToString();
        int room = MaxNameLength - "cloudmem--".Length - hash.Length;
        return $"cloudmem-{(disk.Length > room ? disk[..room] : disk)}-{hash}";
    }

    private static void Record(CustodyRecorder recorder, string kind, ResourceIdentifier id, string what, SnapshotData data)
    {
        if (recorder.Build().Resources.Any(r => r.Kind == kind && string.Equals(r.Id, id.ToString(), StringComparison.OrdinalIgnoreCase)))
        {
            return;
        }
        recorder.Resource(kind, id.ToString(),
            $"{what}, {data.DiskSizeGB?.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "?"} GiB, created {data.TimeCreated:O}, {data.ProvisioningState}, unique id {data.UniqueId}");
    }
}
