using System.Globalization;
using Amazon.EC2.Model;
using CloudMem.Connectors.Core;
using Ec2Tag = Amazon.EC2.Model.Tag;

namespace CloudMem.Connectors.Aws;

/// <summary>
/// The hibernation method: StopInstances Hibernate=true, CreateSnapshots of the instance's volumes, then the root
/// snapshot read back with the EBS direct APIs (nothing is attached to any instance), the hibernation image found on
/// it (Linux swsusp in the swap area, Windows hiberfil.sys), copied out, hashed on our side and opened with our
/// parsers; the manifest (Completed, or Failed with the reason) is written locally and beside the evidence in S3.
/// </summary>
public sealed partial class AwsCaptureConnector
{
    private const int BlockFetchParallelism = 8;

    /// <summary>Test seam: the HTTP handler the EBS direct API client uses (tests trust their own server).</summary>
    internal HttpMessageHandler? EbsHandler { get; set; }

    private async Task<string> HibernateAsync(CustodyRecorder recorder, AwsCalls calls, AwsFacts facts, CancellationToken cancellationToken)
    {
        string stamp = DateTimeOffset.UtcNow.UtcDateTime.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        string directoryKey = AwsKeys.Join(_options.Prefix, _request.CaseId ?? "no-case", _options.InstanceId, stamp);
        try
        {
            string rootSnapshot = await HibernateAndSnapshotAsync(recorder, calls, facts, cancellationToken).ConfigureAwait(false);
            await Resilience.PollUntilAsync($"snapshot {rootSnapshot}", async token =>
            {
                DescribeSnapshotsResponse described = await calls.Run("ec2", "DescribeSnapshots", t => _clients.Ec2.DescribeSnapshotsAsync(new DescribeSnapshotsRequest { SnapshotIds = [rootSnapshot] }, t), token).ConfigureAwait(false);
                string state = described.Snapshots?.FirstOrDefault()?.State?.Value ?? "unknown";
                return state switch
                {
                    "completed" => PollState<bool>.Finished(state, true),
                    "error" => throw new CaptureException($"snapshot {rootSnapshot} ended in state error"),
                    _ => PollState<bool>.Pending(state),
                };
            }, _request.Timeouts.PollInterval, _request.Timeouts.Operation, cancellationToken).ConfigureAwait(false);
            recorder.Step("snapshot completed", rootSnapshot);
            await ReadBackHibernationAsync(recorder, rootSnapshot, stamp, cancellationToken).ConfigureAwait(false);
            recorder.Complete();
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            recorder.Fail(e);
            await TryUploadManifestAsync(recorder, calls, directoryKey).ConfigureAwait(false);
            throw;
        }
        return await WriteManifestAsync(recorder, calls, directoryKey, cancellationToken).ConfigureAwait(false);
    }

    private async Task TryUploadManifestAsync(CustodyRecorder recorder, AwsCalls calls, string directoryKey)
    {
        try
        {
            await WriteManifestAsync(recorder, calls, directoryKey, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception e) when (e is CaptureException or Amazon.Runtime.AmazonServiceException or HttpRequestException)
        {
            _log.Warn($"the Failed manifest could not be uploaded beside the evidence: {CaptureException.OneLine(e.Message)}");
        }
    }

    /// <summary>Hibernates the instance and snapshots its volumes; returns the root volume's snapshot id.</summary>
    private async Task<string> HibernateAndSnapshotAsync(CustodyRecorder recorder, AwsCalls calls, AwsFacts facts, CancellationToken cancellationToken)
    {
        if (_options.TagInstance && _request.CaseId is not null)
        {
            await calls.Run("ec2", "CreateTags", t => _clients.Ec2.CreateTagsAsync(new CreateTagsRequest { Resources = [_options.InstanceId], Tags = [new Ec2Tag("cloudmem:case-id", _request.CaseId)] }, t), cancellationToken).ConfigureAwait(false);
            recorder.Step("tag instance", $"cloudmem:case-id={_request.CaseId}");
        }
        await calls.Run("ec2", "StopInstances", t => _clients.Ec2.StopInstancesAsync(new StopInstancesRequest { InstanceIds = [_options.InstanceId], Hibernate = true }, t), cancellationToken).ConfigureAwait(false);
        recorder.Step("hibernate", $"StopInstances Hibernate=true {_options.InstanceId}");
        await Resilience.PollUntilAsync($"hibernation of {_options.InstanceId}", async token =>
        {
            Instance? instance = await AwsPreflight.DescribeInstanceAsync(_clients, calls, _options.InstanceId, token).ConfigureAwait(false);
            string state = instance?.State?.Name?.Value ?? "unknown";
            return state == "stopped" ? PollState<bool>.Finished(state, true) : PollState<bool>.Pending(state);
        }, _request.Timeouts.PollInterval, _request.Timeouts.Operation, cancellationToken).ConfigureAwait(false);
        recorder.Step("stopped", $"{_options.InstanceId} is stopped (hibernated)");
        var tags = new List<Ec2Tag> { new("cloudmem:source", _options.InstanceId) };
        if (_request.CaseId is not null)
        {
            tags.Add(new Ec2Tag("cloudmem:case-id", _request.CaseId));
        }
        CreateSnapshotsResponse snapshots = await calls.Run("ec2", "CreateSnapshots", t => _clients.Ec2.CreateSnapshotsAsync(new CreateSnapshotsRequest
        {
            InstanceSpecification = new InstanceSpecification { InstanceId = _options.InstanceId, ExcludeBootVolume = false },
            Description = Truncate($"cloudmem hibernation capture {_request.CaseId ?? ""} of {_options.InstanceId}", 255),
            CopyTagsFromSource = Amazon.EC2.CopyTagsFromSource.Volume,
            TagSpecifications = [new TagSpecification { ResourceType = Amazon.EC2.ResourceType.Snapshot, Tags = tags }],
        }, t), cancellationToken).ConfigureAwait(false);
        string? rootSnapshot = null;
        foreach (SnapshotInfo snapshot in snapshots.Snapshots ?? [])
        {
            bool root = facts.Instance?.BlockDeviceMappings?.Any(b => b.DeviceName == facts.Instance.RootDeviceName && b.Ebs?.VolumeId == snapshot.VolumeId) == true;
            if (root || rootSnapshot is null)
            {
                rootSnapshot = snapshot.SnapshotId;
            }
            recorder.Resource("ebs-snapshot", snapshot.SnapshotId, $"of {snapshot.VolumeId}{(root ? " (root volume: holds the hibernation image)" : "")}, {snapshot.VolumeSize} GiB, {snapshot.State?.Value}, started {snapshot.StartTime:O}");
        }
        recorder.Step("snapshot", $"CreateSnapshots: {string.Join(", ", (snapshots.Snapshots ?? []).Select(s => s.SnapshotId))}");
        return rootSnapshot ?? throw new CaptureException($"CreateSnapshots of {_options.InstanceId} returned no snapshot");
    }

    /// <summary>
    /// Reads the snapshot's written blocks into a sparse local disk image (each block's SHA-256 checked), finds the
    /// hibernation image on it, copies it out and records it as evidence (hashed twice on our side: the bytes as they
    /// came from the checked blocks, and the copy read back from disk; opened with our parsers).
    /// </summary>
    private async Task ReadBackHibernationAsync(CustodyRecorder recorder, string snapshotId, string stamp, CancellationToken cancellationToken)
    {
        string region = _clients.Connection.Region ?? _clients.Ec2.Config.RegionEndpoint?.SystemName ?? "us-east-1";
        using var ebs = new EbsDirectClient(_clients.Credentials, region, _clients.Connection.Endpoints.Ebs, EbsHandler);
        ebs.OnRequestId = (operation, id) => recorder.RequestId("ebs", operation, id);
        var blocks = new List<SnapshotBlock>();
        int blockSize = 0;
        long volumeBytes = 0;
        string? next = null;
        do
        {
            SnapshotBlockPage page = await ebs.ListSnapshotBlocksAsync(snapshotId, next, cancellationToken).ConfigureAwait(false);
            blockSize = page.BlockSize;
            volumeBytes = page.VolumeSizeGiB << 30;
            long maxBlocks = volumeBytes / blockSize;
            if (page.Blocks.Any(b => b.BlockIndex < 0 || b.BlockIndex >= maxBlocks) || blocks.Count + page.Blocks.Count > maxBlocks)
            {
                throw new CaptureException($"ebs ListSnapshotBlocks {snapshotId}: block indexes beyond the {page.VolumeSizeGiB} GiB volume");
            }
            blocks.AddRange(page.Blocks);
            next = page.NextToken;
        }
        while (next is not null);
        recorder.Step("list blocks", $"ListSnapshotBlocks {snapshotId}: {blocks.Count} written blocks of {blockSize} bytes, volume {volumeBytes >> 30} GiB");

        Directory.CreateDirectory(_request.OutputDirectory);
        string disk = Path.Combine(_request.OutputDirectory, $"{_options.InstanceId}-{snapshotId}-{stamp}-{Guid.NewGuid().ToString("N")[..8]}.disk.img");
        using (var handle = File.OpenHandle(disk, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, FileOptions.None, 0))
        {
            RandomAccess.SetLength(handle, volumeBytes);
            await Parallel.ForEachAsync(blocks, new ParallelOptions { MaxDegreeOfParallelism = BlockFetchParallelism, CancellationToken = cancellationToken }, async (block, token) =>
            {
                byte[] buffer = new byte[blockSize];
                await ebs.GetSnapshotBlockAsync(snapshotId, block, buffer, token).ConfigureAwait(false);
                await RandomAccess.WriteAsync(handle, buffer, (long)block.BlockIndex * blockSize, token).ConfigureAwait(false);
            }).ConfigureAwait(false);
        }
        recorder.Resource("disk-image", disk, $"snapshot {snapshotId} read back with GetSnapshotBlock: {blocks.Count} blocks, each SHA-256 checked against x-amz-Checksum; unwritten blocks are holes (zeros)");
        recorder.Step("read back", $"GetSnapshotBlock x{blocks.Count} ({(long)blocks.Count * blockSize} bytes) into {Path.GetFileName(disk)}");

        HibernationLocator.RecordFirstImage(recorder, disk, blocks.Select(b => ((long)b.BlockIndex * blockSize, (long)blockSize)).ToList(),
            _request.OutputDirectory, $"{_options.InstanceId}-{stamp}", candidate => $"ebs://{snapshotId}/{candidate.Offset}+{candidate.Length}",
            _opener, $"snapshot {snapshotId}", $"{blocks.Count} written blocks", cancellationToken);
    }
}
