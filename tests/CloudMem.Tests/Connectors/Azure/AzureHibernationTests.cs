using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text.Json;
using Azure.Storage.Blobs.Models;
using Azure.Storage.Blobs.Specialized;
using Azure.Storage.Sas;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// The Azure hibernation path to Completed: deallocate with hibernate=true and a full OS-disk snapshot on the fake ARM,
/// Grant Access answered with a read SAS of a page blob in azurite that holds the snapshot as a fixed VHD (a disk image
/// with a real hibernation image made by our writers around the real Linux fixture memory, then the 512-byte VHD
/// footer), read back through Get Page Ranges and ranged GETs, the image found, copied out, hashed, opened by our
/// parsers, Revoke Access on every outcome, and the manifest uploaded beside the evidence.
/// </summary>
public sealed class AzureHibernationTests(AzuriteHost azurite) : IClassFixture<AzuriteHost>
{
    /// <summary>A fixed-VHD footer for a disk of <paramref name="size"/> bytes (cookie, version, size, geometry, type 2, checksum).</summary>
    private static byte[] Footer(long size)
    {
        byte[] footer = new byte[512];
        "conectix"u8.CopyTo(footer);
        BinaryPrimitives.WriteUInt32BigEndian(footer.AsSpan(8), 2);
        BinaryPrimitives.WriteUInt32BigEndian(footer.AsSpan(12), 0x00010000);
        BinaryPrimitives.WriteUInt64BigEndian(footer.AsSpan(16), ulong.MaxValue);
        "cmem"u8.CopyTo(footer.AsSpan(28));
        "Wi2k"u8.CopyTo(footer.AsSpan(36));
        BinaryPrimitives.WriteInt64BigEndian(footer.AsSpan(40), size);
        BinaryPrimitives.WriteInt64BigEndian(footer.AsSpan(48), size);
        long sectors = Math.Min(size / 512, 65535L * 16 * 255);
        BinaryPrimitives.WriteUInt16BigEndian(footer.AsSpan(56), (ushort)(sectors / (16 * 255)));
        footer[58] = 16;
        footer[59] = 255;
        BinaryPrimitives.WriteUInt32BigEndian(footer.AsSpan(60), 2);
        RandomNumberGenerator.Fill(footer.AsSpan(68, 16));
        uint sum = 0;
        foreach (byte b in footer)
        {
            sum += b;
        }
        BinaryPrimitives.WriteUInt32BigEndian(footer.AsSpan(64), ~sum);
        return footer;
    }

    /// <summary>
    /// The disk as the snapshot's VHD: a page blob in its own container (the managed-disk storage), only the non-zero
    /// 4 MiB pieces written (the rest stays unwritten, as on a real snapshot), then the footer; returns a read SAS URL.
    /// </summary>
    private async Task<string> SnapshotVhdAsync(string disk)
    {
        long size = new FileInfo(disk).Length;
        PageBlobClient blob = azurite.Service.GetBlobContainerClient(azurite.NewContainer()).GetPageBlobClient("abcd1234/snapshot.vhd");
        await blob.CreateAsync(size + 512);
        byte[] buffer = new byte[4 << 20];
        await using (FileStream file = File.OpenRead(disk))
        {
            for (long at = 0; at < size;)
            {
                int read = file.ReadAtLeast(buffer, (int)Math.Min(buffer.Length, size - at), throwOnEndOfStream: true);
                if (buffer.AsSpan(0, read).ContainsAnyExcept((byte)0))
                {
                    using var piece = new MemoryStream(buffer, 0, read);
                    await blob.UploadPagesAsync(piece, at);
                }
                at += read;
            }
        }
        using (var footer = new MemoryStream(Footer(size)))
        {
            await blob.UploadPagesAsync(footer, size);
        }
        return blob.GenerateSasUri(BlobSasPermissions.Read, DateTimeOffset.UtcNow.AddHours(1)).AbsoluteUri;
    }

    /// <summary>A snapshot VHD of a disk with random partitions and no hibernation image; returns its read SAS URL.</summary>
    private async Task<string> JunkSnapshotAsync(TempDir dir)
    {
        string junk = dir.File("junk.bin");
        File.WriteAllBytes(junk, RandomNumberGenerator.GetBytes((int)(2 * HibernationDisks.MiB)));
        (string disk, _, _) = HibernationDisks.Disk(dir, 0x83, junk, 0);
        return await SnapshotVhdAsync(disk);
    }

    private static async Task<string> UploadedManifestAsync(AzureTestBed bed)
    {
        BlobItem uploaded = Assert.Single(bed.ContainerClient.GetBlobs(), b => b.Name.EndsWith(".custody.json", StringComparison.Ordinal));
        return (await bed.ContainerClient.GetBlobClient(uploaded.Name).DownloadContentAsync()).Value.Content.ToString();
    }

    [SkippableTheory]
    [InlineData("swsusp", "lzo", (byte)0x82, 0L)]
    [InlineData("hiberfil", null, (byte)0x07, 4L << 20)]
    public async Task Hibernation_image_is_read_back_through_grant_access_and_the_capture_completes(string kind, string? variant, byte partition, long offset)
    {
        using var dir = new TempDir();
        string image = HibernationDisks.Image(dir, kind, variant);
        (string disk, long payloadStart, long partitionEnd) = HibernationDisks.Disk(dir, partition, image, offset);
        await using var bed = new AzureTestBed(azurite, Fixture.Require("memory.lime"), hibernationEnabled: true);
        string sas = await SnapshotVhdAsync(disk);
        var granted = new List<string>();
        bed.Arm.SnapshotAccess = id =>
        {
            granted.Add(id);
            return sas;
        };

        CaptureResult result = await bed.Connector(bed.Request(), AzureCaptureMethod.Hibernate).CaptureAsync(CancellationToken.None);

        CustodyManifest manifest = CustodyManifest.Read(result.ManifestPath);
        EvidenceRecord evidence = HibernationDisks.AssertCompleted(manifest, kind, disk, payloadStart, partitionEnd);
        string snapshotId = Assert.Single(granted);
        Assert.Equal($"azure-snapshot:{snapshotId}/{payloadStart}+{partitionEnd - payloadStart}", evidence.Uri);
        // The ARM calls: hibernate, one full snapshot of the OS disk, grant read access, revoke it.
        var mutating = bed.Arm.MutatingCalls.Select(c => $"{c.Method} {c.Path[(c.Path.LastIndexOf('/') + 1)..]}").ToList();
        Assert.Equal(["POST deallocate", $"PUT {snapshotId[(snapshotId.LastIndexOf('/') + 1)..]}", "POST beginGetAccess", "POST endGetAccess"], mutating);
        Assert.Contains("hibernate=true", bed.Arm.MutatingCalls[0].Query);
        using (JsonDocument put = JsonDocument.Parse(bed.Arm.MutatingCalls[1].Body))
        {
            JsonElement creation = put.RootElement.GetProperty("properties").GetProperty("creationData");
            Assert.Equal("Copy", creation.GetProperty("createOption").GetString());
            Assert.EndsWith("/disks/vm1-osdisk", creation.GetProperty("sourceResourceId").GetString(), StringComparison.Ordinal);
        }
        Assert.Contains("\"access\":\"Read\"", bed.Arm.MutatingCalls[2].Body, StringComparison.Ordinal);
        Assert.Equal(snapshotId, Assert.Single(bed.Arm.RevokedAccess));
        Assert.Empty(bed.Arm.OpenAccess);
        Assert.Contains(manifest.Resources, r => r.Kind == "snapshot" && r.Id == snapshotId && r.Detail.Contains("OS disk", StringComparison.Ordinal));
        Assert.Contains(manifest.Steps, s => s.Detail.Contains("PowerState/deallocated", StringComparison.Ordinal));
        // Only the written pages were read: far fewer bytes than the disk.
        StepRecord ranges = Assert.Single(manifest.Steps, s => s.Action == "page ranges");
        Assert.DoesNotContain(manifest.Steps, s => s.Action == "end access" && s.Detail.Contains("FAILED", StringComparison.Ordinal));
        Assert.True(manifest.RequestIds.Count(r => r.Service == "blob" && r.Operation.StartsWith("GET ", StringComparison.Ordinal)) > 2, ranges.Detail);
        // The SAS never reaches the manifest, the log or the uploaded copy.
        string sig = new Uri(sas).Query.TrimStart('?');
        string text = await File.ReadAllTextAsync(result.ManifestPath);
        Assert.DoesNotContain(sig, text, StringComparison.Ordinal);
        Assert.DoesNotContain(sig, bed.LogText.ToString(), StringComparison.Ordinal);
        Assert.Equal(text, await UploadedManifestAsync(bed));
        // Every ARM request is one the hibernation role allows.
        Assert.All(bed.Arm.Calls, c => Assert.True(AzureCapturePermissions.For("arm", c.Method, c.Path, AzureCapturePermissions.Hibernation) is not null, $"{c.Method} {c.Path}: not in AzureCapturePermissions.Hibernation"));
    }

    [SkippableFact]
    public async Task A_snapshot_without_a_hibernation_image_fails_access_is_still_revoked_and_the_failed_manifest_is_uploaded()
    {
        using var dir = new TempDir();
        await using var bed = new AzureTestBed(azurite, Fixture.Require("memory.lime"), hibernationEnabled: true);
        string sas = await JunkSnapshotAsync(dir);
        bed.Arm.SnapshotAccess = _ => sas;

        CaptureException error = await Assert.ThrowsAsync<CaptureException>(
            () => bed.Connector(bed.Request(), AzureCaptureMethod.Hibernate).CaptureAsync(CancellationToken.None));

        Assert.Matches("no hibernation image on snapshot cloudmem-IR-42-vm1-[0-9TZ]+: no swsusp or hiberfil signature in its [0-9]+ written page ranges", error.Message);
        Assert.Single(bed.Arm.RevokedAccess);
        Assert.Empty(bed.Arm.OpenAccess);
        Assert.Contains("\"status\": \"Failed\"", await UploadedManifestAsync(bed), StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task A_byte_corrupted_on_the_way_fails_the_range_md5_check_and_access_is_revoked()
    {
        using var dir = new TempDir();
        await using var bed = new AzureTestBed(azurite, Fixture.Require("memory.lime"), hibernationEnabled: true);
        string sas = await JunkSnapshotAsync(dir);
        // 1.5 MB into a connection is inside a 4 MiB range's body.
        using var proxy = new FaultProxy(new Uri(sas), ProxyFault.CorruptOnce, 1_500_000);
        bed.Arm.SnapshotAccess = _ => new UriBuilder(sas) { Port = proxy.Url.Port }.Uri.AbsoluteUri;

        CaptureException error = await Assert.ThrowsAsync<CaptureException>(
            () => bed.Connector(bed.Request(), AzureCaptureMethod.Hibernate).CaptureAsync(CancellationToken.None));

        Assert.Equal(1, proxy.Fired);
        Assert.Matches("snapshot read at 0x[0-9A-F]+\\+[0-9]+: MD5 [0-9a-f]{32} differs from the service's [0-9a-f]{32}", error.Message);
        Assert.Single(bed.Arm.RevokedAccess);
    }
}
