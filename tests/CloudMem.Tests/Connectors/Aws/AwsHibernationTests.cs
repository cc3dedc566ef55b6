using System.Security.Cryptography;
using Amazon.S3.Model;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>
/// The EC2 hibernation path to Completed: StopInstances Hibernate=true and CreateSnapshots on the EC2 fake, the root
/// snapshot read back through the EBS direct APIs (<see cref="FakeEbsDirect"/>: the documented wire shape, SigV4
/// recomputed, per-block SHA-256), served from a raw disk image holding a real hibernation image made by our writers
/// around the real Linux fixture memory (swsusp in a swap partition; hiberfil.sys on an NTFS partition), found, copied
/// out, hashed, opened by our parsers, and the manifest uploaded to s3rver beside the evidence.
/// </summary>
public sealed class AwsHibernationTests
{
    private const long MiB = HibernationDisks.MiB;

    private static async Task<string> UploadedManifestAsync(AwsHarness world)
    {
        ListObjectsV2Response listed = await world.Clients.S3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = AwsHarness.Bucket, Prefix = "cases/IR-42/" });
        string key = Assert.Single(listed.S3Objects, o => o.Key.EndsWith("/custody.json", StringComparison.Ordinal)).Key;
        using GetObjectResponse response = await world.Clients.S3.GetObjectAsync(AwsHarness.Bucket, key);
        using var reader = new StreamReader(response.ResponseStream);
        return await reader.ReadToEndAsync();
    }

    [SkippableTheory]
    [InlineData("swsusp", "lzo", (byte)0x82, 0L, "swsusp")]
    [InlineData("hiberfil", null, (byte)0x07, 4L << 20, "hiberfil")]
    public async Task Hibernation_image_is_read_back_from_the_snapshot_and_the_capture_completes(string target, string? variant, byte partition, long offset, string kind)
    {
        using var dir = new TempDir();
        string image = HibernationDisks.Image(dir, target, variant);
        (string disk, long payloadStart, long partitionEnd) = HibernationDisks.Disk(dir, partition, image, offset);
        using var world = new AwsHarness(Fixture.Require("memory.lime"));
        world.Fake.HibernationConfigured = true;
        world.Fake.Ebs.Disks["snap-0root"] = disk;
        var options = world.Options() with { Method = AwsCaptureMethod.Hibernate };

        CaptureResult result = await world.Connector(options).CaptureAsync(CancellationToken.None);

        CustodyManifest manifest = CustodyManifest.Read(result.ManifestPath);
        EvidenceRecord evidence = HibernationDisks.AssertCompleted(manifest, kind, disk, payloadStart, partitionEnd);
        Assert.Equal($"ebs://snap-0root/{payloadStart}+{partitionEnd - payloadStart}", evidence.Uri);
        // The EBS calls: listed in pages, only written blocks fetched, every request id in the manifest.
        Assert.True(world.Fake.Calls.Count(c => c.Operation == "ListSnapshotBlocks") > 1);
        long written = world.Fake.Ebs.BlocksServed;
        Assert.True(written < new FileInfo(disk).Length / FakeEbsDirect.BlockSize);
        Assert.All(world.Fake.Calls.Where(c => c.Service == "ebs"), c => Assert.Contains(manifest.RequestIds, r => r.RequestId == c.RequestId && r.Service == "ebs"));
        Assert.Contains(manifest.Resources, r => r.Kind == "ebs-snapshot" && r.Id == "snap-0root" && r.Detail.Contains("root volume", StringComparison.Ordinal));
        Assert.Contains(manifest.Steps, s => s.Action == "snapshot completed");
        var mutating = world.Fake.Operations.Where(o => o is "ec2:StopInstances" or "ec2:CreateSnapshots").ToList();
        Assert.Equal(["ec2:StopInstances", "ec2:CreateSnapshots"], mutating);
        Assert.Contains("Hibernate=true", world.Fake.Calls.First(c => c.Operation == "StopInstances").Body, StringComparison.Ordinal);
        // Uploaded beside the evidence, byte for byte.
        Assert.Equal(await File.ReadAllTextAsync(result.ManifestPath), await UploadedManifestAsync(world));
    }

    [SkippableFact]
    public async Task A_snapshot_without_an_image_or_with_a_bad_block_fails_and_the_failed_manifest_is_uploaded()
    {
        using var dir = new TempDir();
        string junk = dir.File("junk.bin");
        File.WriteAllBytes(junk, RandomNumberGenerator.GetBytes((int)(2 * MiB)));
        (string disk, _, _) = HibernationDisks.Disk(dir, 0x83, junk, 0);
        using var world = new AwsHarness(Fixture.Require("memory.lime"));
        var options = world.Options() with { Method = AwsCaptureMethod.Hibernate };
        // Not configured for hibernation: refused before anything is stopped.
        await Assert.ThrowsAsync<CaptureException>(() => world.Connector(options).CaptureAsync(CancellationToken.None));
        Assert.DoesNotContain("ec2:StopInstances", world.Fake.Operations);

        world.Fake.HibernationConfigured = true;
        world.Fake.Ebs.Disks["snap-0root"] = disk;
        CaptureException none = await Assert.ThrowsAsync<CaptureException>(() => world.Connector(options).CaptureAsync(CancellationToken.None));
        Assert.Contains("no hibernation image on snapshot snap-0root", none.Message);
        Assert.Contains("\"status\": \"Failed\"", await UploadedManifestAsync(world));

        world.Fake.InstanceState = "running";
        world.Fake.Ebs.CorruptBlock = 2;
        CaptureException bad = await Assert.ThrowsAsync<CaptureException>(() => world.Connector(options).CaptureAsync(CancellationToken.None));
        Assert.Matches("GetSnapshotBlock snap-0root block 2: SHA-256 .* differs from x-amz-Checksum", bad.Message);
    }
}
