using System.Buffers.Binary;
using System.Globalization;
using Azure;
using Azure.Core;
using Azure.ResourceManager;
using Azure.ResourceManager.Compute;
using Azure.ResourceManager.Compute.Models;
using Azure.Storage.Blobs.Models;
using Azure.Storage.Blobs.Specialized;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Azure;

/// <summary>
/// Disk evidence: the durable workflow's managed-disk snapshots (<see cref="SnapshotDisksAsync"/>, over
/// <see cref="AzureDiskSnapshots"/>), and the hibernation method: deallocate with hibernate=true, a full snapshot of the
/// OS disk, then the snapshot read back without attaching it anywhere: Grant Access (a read SAS on the snapshot's VHD,
/// a page blob), Get Page Ranges, ranged GETs of the written pages (each range's MD5 checked here against the
/// service's) into a sparse local disk
/// image, the hibernation image found on it (Linux swsusp in the swap area, Windows hiberfil.sys;
/// <see cref="HibernationLocator"/>), copied out, hashed on our side and opened with our parsers; Revoke Access on
/// every outcome.
/// </summary>
internal sealed partial class AzureCaptureConnector
{
    /// <summary>Bytes per ranged GET of the snapshot (the service returns a range MD5 up to 4 MiB).</summary>
    private const int ReadChunk = 4 << 20;

    private const int ReadParallelism = 8;

    /// <summary>Most page ranges accepted from Get Page Ranges (a 32 TiB disk written in 512-byte islands would exceed it).</summary>
    private const int MaxPageRanges = 4_000_000;

    /// <summary>
    /// The workflow's disk snapshots of this VM (OS disk and data disks, incremental), tagged with the case, alert and
    /// capture (<paramref name="captureId"/>: the orchestration instance, the same on every attempt), optionally copied to
    /// <paramref name="forensic"/>; <paramref name="done"/> and <paramref name="copies"/> are the saved state.
    /// </summary>
    internal async Task SnapshotDisksAsync(CustodyRecorder recorder, string captureId, string? alertId, IDictionary<string, string> done,
        IDictionary<string, string> copies, AzureForensicTarget? forensic, Func<CancellationToken, Task> save,
        Func<string, CancellationToken, Task>? afterCreate, CancellationToken cancellationToken)
    {
        AzureVmFacts facts = await _arm.DescribeAsync(_options.VmId, cancellationToken).ConfigureAwait(false);
        var tags = new Dictionary<string, string> { ["cloudmem-capture"] = captureId, ["cloudmem-source-vm"] = facts.Name };
        if (_request.CaseId is not null)
        {
            tags["cloudmem-case"] = _request.CaseId;
        }
        if (alertId is not null)
        {
            tags["cloudmem-alert"] = alertId.Length > 256 ? alertId[..256] : alertId;
        }
        var context = new AzureDiskSnapshots.Context(_arm, recorder, captureId, tags, _request.Timeouts.PollInterval, _request.Timeouts.Operation) { AfterCreate = afterCreate };
        await AzureDiskSnapshots.SnapshotDisksAsync(context, facts, done, copies, forensic, save, cancellationToken).ConfigureAwait(false);
    }

    private async Task HibernateAsync(CustodyRecorder recorder, AzureVmFacts facts, CancellationToken cancellationToken)
    {
        ArmOperation hibernate = await _arm.StartHibernateAsync(_options.VmId, cancellationToken).ConfigureAwait(false);
        recorder.Step("hibernate", $"POST deallocate?hibernate=true on {facts.Name} accepted");
        await AzureArm.CompleteAsync(hibernate, $"hibernation of {facts.Name}", _request.Timeouts.PollInterval, _request.Timeouts.Operation, cancellationToken).ConfigureAwait(false);
        AzureVmFacts after = await _arm.DescribeAsync(_options.VmId, cancellationToken).ConfigureAwait(false);
        recorder.Step("hibernate", $"{facts.Name} is now PowerState/{after.PowerState ?? "unknown"}");
        string stamp = DateTimeOffset.UtcNow.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        string name = $"cloudmem-{(_request.CaseId ?? "nocase")}-{facts.Name}-{stamp}";
        if (name.Length > AzureDiskSnapshots.MaxNameLength)
        {
            name = name[..AzureDiskSnapshots.MaxNameLength];
        }
        var tags = new Dictionary<string, string> { ["cloudmem-source-vm"] = facts.Name, ["cloudmem-trigger"] = _request.Trigger.ToString(), ["cloudmem-capture"] = name };
        if (_request.CaseId is not null)
        {
            tags["cloudmem-case"] = _request.CaseId;
        }
        var id = SnapshotResource.CreateResourceIdentifier(_options.VmId.SubscriptionId!, _options.VmId.ResourceGroupName!, name);
        var context = new AzureDiskSnapshots.Context(_arm, recorder, name, tags, _request.Timeouts.PollInterval, _request.Timeouts.Operation);
        SnapshotData snapshot = await AzureDiskSnapshots.EnsureAsync(context, id, new AzureSnapshotSource(facts.OsDiskId!, DiskCreateOption.Copy, Incremental: false),
            facts.Location, tags, _ => Task.CompletedTask, cancellationToken).ConfigureAwait(false);
        recorder.Resource("snapshot", id.ToString(), $"full copy of {facts.OsDiskId} (OS disk: holds the hibernation image; unique id {snapshot.UniqueId}, {snapshot.DiskSizeGB} GiB, state {snapshot.ProvisioningState})");
        await ReadBackHibernationAsync(recorder, id, stamp, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Grant Access, read the VHD back, find and record the hibernation image, Revoke Access (also when the read failed).</summary>
    private async Task ReadBackHibernationAsync(CustodyRecorder recorder, ResourceIdentifier snapshotId, string stamp, CancellationToken cancellationToken)
    {
        TimeSpan duration = _request.Timeouts.Command;
        ArmOperation<AccessUri> grant = await _arm.StartGrantReadAsync(snapshotId, duration, cancellationToken).ConfigureAwait(false);
        AccessUri access = await AzureArm.CompleteAsync(grant, $"grant access to {snapshotId.Name}", _request.Timeouts.PollInterval, _request.Timeouts.Operation, cancellationToken).ConfigureAwait(false);
        if (string.IsNullOrEmpty(access.AccessSas) || !Uri.TryCreate(access.AccessSas, UriKind.Absolute, out Uri? sas))
        {
            throw new CaptureException($"beginGetAccess on {snapshotId.Name} returned no read SAS URL");
        }
        _log.Scrubber.Register(access.AccessSas);
        if (sas.Query.Length > 1)
        {
            _log.Scrubber.Register(sas.Query[1..]);
        }
        recorder.Step("grant access", $"beginGetAccess Read for {Resilience.Describe(duration)} on {snapshotId.Name}: read SAS to {SecretScrubber.WithoutQuery(access.AccessSas)} (the SAS itself is not recorded)");
        try
        {
            await ReadVhdAsync(recorder, snapshotId, new PageBlobClient(sas, _blobOptions), stamp, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            try
            {
                ArmOperation revoke = await _arm.StartRevokeAccessAsync(snapshotId, CancellationToken.None).ConfigureAwait(false);
                await AzureArm.CompleteAsync(revoke, $"end access to {snapshotId.Name}", _request.Timeouts.PollInterval, _request.Timeouts.Operation, CancellationToken.None).ConfigureAwait(false);
                recorder.Step("end access", $"endGetAccess on {snapshotId.Name}: the read SAS no longer works");
            }
            catch (Exception e) when (e is RequestFailedException or CaptureException)
            {
                recorder.Step("end access", $"endGetAccess on {snapshotId.Name} FAILED ({Describe(e)}): the read SAS stays valid until it expires; revoke it by hand");
            }
        }
    }

    /// <summary>
    /// Reads the written pages of the snapshot's fixed VHD (raw disk, then a 512-byte footer whose cookie, type and size
    /// are checked) into a sparse local disk image, and records the hibernation image found on it.
    /// </summary>
    private async Task ReadVhdAsync(CustodyRecorder recorder, ResourceIdentifier snapshotId, PageBlobClient blob, string stamp, CancellationToken cancellationToken)
    {
        BlobProperties properties = (await blob.GetPropertiesAsync(cancellationToken: cancellationToken).ConfigureAwait(false)).Value;
        long length = properties.ContentLength;
        if (properties.BlobType != BlobType.Page || length < 1024 || length % 512 != 0)
        {
            throw new CaptureException($"snapshot {snapshotId.Name}: the SAS names a {properties.BlobType} blob of {length} bytes, not a fixed VHD page blob");
        }
        long diskBytes = length - 512;
        byte[] footer = new byte[512];
        await ReadRangeAsync(blob, diskBytes, footer, cancellationToken).ConfigureAwait(false);
        long declared = BinaryPrimitives.ReadInt64BigEndian(footer.AsSpan(48));
        uint diskType = BinaryPrimitives.ReadUInt32BigEndian(footer.AsSpan(60));
        if (!footer.AsSpan(0, 8).SequenceEqual("conectix"u8) || diskType != 2 || declared != diskBytes)
        {
            throw new CaptureException($"snapshot {snapshotId.Name}: VHD footer at 0x{diskBytes:X} is not a fixed-disk footer for {diskBytes} bytes (cookie '{System.Text.Encoding.ASCII.GetString(footer, 0, 8)}', type {diskType}, size {declared})");
        }
        var ranges = new List<(long Offset, long Length)>();
        await foreach (PageRangeItem range in blob.GetAllPageRangesAsync(cancellationToken: cancellationToken).ConfigureAwait(false))
        {
            if (range.IsClear)
            {
                continue;
            }
            long start = range.Range.Offset, end = Math.Min(diskBytes, start + (range.Range.Length ?? 0));
            if (start < 0 || start >= end)
            {
                continue;
            }
            if (ranges.Count == MaxPageRanges)
            {
                throw new CaptureException($"snapshot {snapshotId.Name}: more than {MaxPageRanges} written page ranges");
            }
            ranges.Add((start, end - start));
        }
        long written = ranges.Sum(r => r.Length);
        recorder.Step("page ranges", $"Get Page Ranges {snapshotId.Name}: {ranges.Count} written ranges, {written} bytes of a {diskBytes >> 20} MiB fixed VHD");

        Directory.CreateDirectory(_request.OutputDirectory);
        string disk = Path.Combine(_request.OutputDirectory, $"{_options.VmId.Name}-{snapshotId.Name}-{Guid.NewGuid().ToString("N")[..8]}.disk.img");
        var chunks = ranges.SelectMany(r => Enumerable.Range(0, (int)((r.Length + ReadChunk - 1) / ReadChunk))
            .Select(i => (Offset: r.Offset + ((long)i * ReadChunk), Length: (int)Math.Min(ReadChunk, r.Length - ((long)i * ReadChunk))))).ToList();
        using (var handle = File.OpenHandle(disk, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read, FileOptions.None, 0))
        {
            RandomAccess.SetLength(handle, diskBytes);
            await Parallel.ForEachAsync(chunks, new ParallelOptions { MaxDegreeOfParallelism = ReadParallelism, CancellationToken = cancellationToken }, async (chunk, token) =>
            {
                byte[] buffer = new byte[chunk.Length];
                await ReadRangeAsync(blob, chunk.Offset, buffer, token).ConfigureAwait(false);
                await RandomAccess.WriteAsync(handle, buffer, chunk.Offset, token).ConfigureAwait(false);
            }).ConfigureAwait(false);
        }
        recorder.Resource("disk-image", disk, $"snapshot {snapshotId} read back through its Grant Access SAS: {chunks.Count} ranged GETs ({written} bytes), each range's MD5 checked; unwritten pages are holes (zeros)");
        recorder.Step("read back", $"{chunks.Count} ranged GETs of {snapshotId.Name} into {Path.GetFileName(disk)}");
        HibernationLocator.RecordFirstImage(recorder, disk, ranges, _request.OutputDirectory, $"{_options.VmId.Name}-{stamp}",
            candidate => $"azure-snapshot:{snapshotId}/{candidate.Offset}+{candidate.Length}", _opener, $"snapshot {snapshotId.Name}",
            $"{ranges.Count} written page ranges", cancellationToken);
    }

    /// <summary>
    /// One ranged GET (at most 4 MiB) asking for the range's MD5 (x-ms-range-get-content-md5); the whole buffer must
    /// arrive and its MD5, computed here, must equal the service's.
    /// </summary>
    private static async Task ReadRangeAsync(PageBlobClient blob, long offset, byte[] buffer, CancellationToken cancellationToken)
    {
        var options = new BlobDownloadOptions
        {
            Range = new HttpRange(offset, buffer.Length),
            TransferValidation = new global::Azure.Storage.DownloadTransferValidationOptions { ChecksumAlgorithm = global::Azure.Storage.StorageChecksumAlgorithm.MD5, AutoValidateChecksum = false },
        };
        BlobDownloadStreamingResult download = (await blob.DownloadStreamingAsync(options, cancellationToken).ConfigureAwait(false)).Value;
        await using Stream content = download.Content;
        int read = await content.ReadAtLeastAsync(buffer, buffer.Length, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
        if (read != buffer.Length)
        {
            throw new CaptureException($"snapshot read at 0x{offset:X}: {read} bytes returned, {buffer.Length} asked");
        }
        byte[]? stated = download.Details.ContentHash;
        if (stated is not { Length: 16 })
        {
            throw new CaptureException($"snapshot read at 0x{offset:X}+{buffer.Length}: the service returned no range MD5");
        }
        byte[] ours = System.Security.Cryptography.MD5.HashData(buffer);
        if (!ours.AsSpan().SequenceEqual(stated))
        {
            throw new CaptureException($"snapshot read at 0x{offset:X}+{buffer.Length}: MD5 {Convert.ToHexStringLower(ours)} differs from the service's {Convert.ToHexStringLower(stated)}");
        }
    }
}
