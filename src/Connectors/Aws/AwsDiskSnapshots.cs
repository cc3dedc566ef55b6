using Amazon.EC2.Model;
using CloudMem.Connectors.Core;
using Ec2Tag = Amazon.EC2.Model.Tag;

namespace CloudMem.Connectors.Aws;

/// <summary>
/// Disk evidence beside the memory capture (workflow step <c>snapshots</c>): one CreateSnapshot per EBS volume attached
/// to the instance, tagged cloudmem:ticket (case), cloudmem:finding, cloudmem:instance and cloudmem:device, each
/// recorded in the manifest (snapshot id, volume id, device, size, start time, state) and saved in the workflow state
/// as soon as it exists, so a retried step snapshots only the volumes not done yet. With a forensic account,
/// <see cref="ShareAsync"/> (run at finalize) grants it createVolumePermission on every completed snapshot
/// (ModifySnapshotAttribute), from where the forensic account copies them into its own custody (CopySnapshot is issued
/// by the receiving account); a snapshot still pending then is recorded as not shared.
/// </summary>
internal static class AwsDiskSnapshots
{
    /// <summary>Most volumes snapshotted for one instance.</summary>
    public const int MaxVolumes = 64;

    public static async Task SnapshotVolumesAsync(AwsClients clients, AwsCalls calls, CustodyRecorder recorder, string instanceId, string? ticket, string? finding,
        IDictionary<string, string> done, Func<CancellationToken, Task> save, CancellationToken cancellationToken)
    {
        Instance instance = await AwsPreflight.DescribeInstanceAsync(clients, calls, instanceId, cancellationToken).ConfigureAwait(false)
            ?? throw new CaptureException($"disk snapshots: instance {instanceId} not found");
        var volumes = (instance.BlockDeviceMappings ?? []).Where(m => m.Ebs?.VolumeId is not null).Take(MaxVolumes + 1).ToList();
        if (volumes.Count > MaxVolumes)
        {
            throw new CaptureException($"disk snapshots: {instanceId} has more than {MaxVolumes} EBS volumes");
        }
        foreach (InstanceBlockDeviceMapping mapping in volumes)
        {
            string volume = mapping.Ebs.VolumeId;
            if (done.TryGetValue(volume, out string? existing))
            {
                recorder.Step("disk snapshot", $"{volume} already has {existing} (earlier attempt)");
                continue;
            }
            var tags = new List<Ec2Tag> { new("cloudmem:instance", instanceId), new("cloudmem:device", mapping.DeviceName ?? "unknown") };
            if (ticket is not null)
            {
                tags.Add(new Ec2Tag("cloudmem:ticket", ticket));
            }
            if (finding is not null)
            {
                tags.Add(new Ec2Tag("cloudmem:finding", finding));
            }
            CreateSnapshotResponse created = await calls.Run("ec2", "CreateSnapshot", t => clients.Ec2.CreateSnapshotAsync(new CreateSnapshotRequest
            {
                VolumeId = volume,
                Description = $"cloudmem disk evidence {ticket ?? ""} {instanceId} {mapping.DeviceName}".Trim(),
                TagSpecifications = [new TagSpecification { ResourceType = Amazon.EC2.ResourceType.Snapshot, Tags = tags }],
            }, t), cancellationToken).ConfigureAwait(false);
            Snapshot snapshot = created.Snapshot ?? throw new CaptureException($"CreateSnapshot of {volume} returned no snapshot");
            done[volume] = snapshot.SnapshotId;
            await save(cancellationToken).ConfigureAwait(false);
            recorder.Resource("ebs-snapshot", snapshot.SnapshotId,
                $"volume {volume} ({mapping.DeviceName}{(mapping.DeviceName == instance.RootDeviceName ? ", root" : "")}), {snapshot.VolumeSize} GiB, started {snapshot.StartTime:O}, {snapshot.State?.Value}");
        }
        recorder.Step("disk snapshots", volumes.Count == 0
            ? $"{instanceId} has no EBS volume"
            : $"{string.Join(", ", volumes.Select(v => $"{v.Ebs.VolumeId} -> {done[v.Ebs.VolumeId]}"))}");
    }

    public static async Task ShareAsync(AwsClients clients, AwsCalls calls, CustodyRecorder recorder, IReadOnlyDictionary<string, string> done, string account, CancellationToken cancellationToken)
    {
        if (done.Count == 0)
        {
            return;
        }
        DescribeSnapshotsResponse described = await calls.Run("ec2", "DescribeSnapshots", t => clients.Ec2.DescribeSnapshotsAsync(new DescribeSnapshotsRequest { SnapshotIds = [.. done.Values] }, t), cancellationToken).ConfigureAwait(false);
        foreach (Snapshot snapshot in described.Snapshots ?? [])
        {
            if (snapshot.State?.Value != "completed")
            {
                recorder.Step("share snapshot", $"{snapshot.SnapshotId} is {snapshot.State?.Value} ({snapshot.Progress}): NOT shared with {account} yet; share it once completed");
                continue;
            }
            await calls.Run("ec2", "ModifySnapshotAttribute", t => clients.Ec2.ModifySnapshotAttributeAsync(new ModifySnapshotAttributeRequest
            {
                SnapshotId = snapshot.SnapshotId,
                Attribute = Amazon.EC2.SnapshotAttributeName.CreateVolumePermission,
                OperationType = Amazon.EC2.OperationType.Add,
                UserIds = [account],
            }, t), cancellationToken).ConfigureAwait(false);
            recorder.Resource("ebs-snapshot-share", snapshot.SnapshotId, $"createVolumePermission added for forensic account {account} (it copies the snapshot with CopySnapshot)");
        }
    }
}
