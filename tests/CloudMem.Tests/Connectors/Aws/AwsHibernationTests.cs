using System.Buffers.Binary;
using System.Security.Cryptography;
using Amazon.S3.Model;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Engine.Convert;
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
    private const long MiB = 1 << 20;

    /// <summary>A hibernation image of the fixture memory written by our own writer.</summary>
    private static string Image(TempDir dir, string target, string? variant)
    {
        string fixture = Fixture.Require("memory.lime");
        using RunMappedMemory memory = CaptureOpener.Open(fixture);
        string output = dir.File($"hibernation.{target}");
        Assert.True(CaptureConverter.Convert(fixture, memory, target, output, variant).Verified);
        return output;
    }

    /// <summary>
    /// An MBR disk: partition 1 (Linux, 1 MiB in, 4 MiB, its first MiB random), partition 2 of <paramref name="type"/> at
    /// 8 MiB holding <paramref name="payload"/> at <paramref name="offsetInPartition"/> (an NTFS boot sector first when
    /// type 0x07). Returns the disk, and where the payload and its partition lie.
    /// </summary>
    private static (string Disk, long PayloadStart, long PartitionEnd) Disk(TempDir dir, byte type, string payload, long offsetInPartition)
    {
        long payloadLength = new FileInfo(payload).Length;
        long partStart = 8 * MiB, partLength = ((offsetInPartition + payloadLength + MiB - 1) / MiB * MiB) + MiB;
        string disk = dir.File($"disk-{type:X2}.img");
        using (var file = new FileStream(disk, FileMode.CreateNew))
        {
            file.SetLength(partStart + partLength + (3 * MiB));
            byte[] mbr = new byte[512];
            void Entry(int i, byte kind, long start, long length)
            {
                mbr[446 + (i * 16) + 4] = kind;
                BinaryPrimitives.WriteUInt32LittleEndian(mbr.AsSpan(446 + (i * 16) + 8), (uint)(start / 512));
                BinaryPrimitives.WriteUInt32LittleEndian(mbr.AsSpan(446 + (i * 16) + 12), (uint)(length / 512));
            }
            Entry(0, 0x83, MiB, 4 * MiB);
            Entry(1, type, partStart, partLength);
            mbr[510] = 0x55;
            mbr[511] = 0xAA;
            file.Write(mbr);
            file.Position = MiB;
            file.Write(RandomNumberGenerator.GetBytes((int)MiB));
            if (type == 0x07)
            {
                byte[] boot = new byte[512];
                "NTFS    "u8.CopyTo(boot.AsSpan(3));
                boot[510] = 0x55;
                boot[511] = 0xAA;
                file.Position = partStart;
                file.Write(boot);
            }
            file.Position = partStart + offsetInPartition;
            using FileStream source = File.OpenRead(payload);
            source.CopyTo(file);
        }
        return (disk, partStart + offsetInPartition, partStart + partLength);
    }

    private static string Sha256(string path, long start, long end)
    {
        using FileStream file = File.OpenRead(path);
        file.Position = start;
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 20];
        for (long left = end - start; left > 0;)
        {
            int read = file.Read(buffer, 0, (int)Math.Min(buffer.Length, left));
            hash.AppendData(buffer, 0, read);
            left -= read;
        }
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

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
        string image = Image(dir, target, variant);
        (string disk, long payloadStart, long partitionEnd) = Disk(dir, partition, image, offset);
        using var world = new AwsHarness(Fixture.Require("memory.lime"));
        world.Fake.HibernationConfigured = true;
        world.Fake.Ebs.Disks["snap-0root"] = disk;
        var options = world.Options() with { Method = AwsCaptureMethod.Hibernate };

        CaptureResult result = await world.Connector(options).CaptureAsync(CancellationToken.None);

        CustodyManifest manifest = CustodyManifest.Read(result.ManifestPath);
        Assert.True(manifest.Status == CustodyStatus.Completed, manifest.Error);
        EvidenceRecord evidence = Assert.Single(manifest.Evidence);
        Assert.True(evidence.Verified, evidence.Problem);
        Assert.Equal($"ebs://snap-0root/{payloadStart}+{partitionEnd - payloadStart}", evidence.Uri);
        Assert.StartsWith($"hibernation-{kind}-", evidence.Name, StringComparison.Ordinal);
        Assert.Contains(kind == "swsusp" ? "swsusp" : "hiberfil", evidence.OpenedAs, StringComparison.Ordinal);
        // Our hash is the hash of exactly those bytes of the disk image the fake served.
        Assert.Equal(Sha256(disk, payloadStart, partitionEnd), evidence.Sha256);
        Assert.Equal(evidence.Sha256, evidence.SourceSha256);
        // The copy opens and holds the fixture's memory.
        using (RunMappedMemory copy = CaptureOpener.Open(evidence.LocalPath!))
        using (RunMappedMemory original = CaptureOpener.Open(Fixture.Require("memory.lime")))
        {
            PhysicalRun run = original.Runs[original.Runs.Count / 2];
            byte[] a = new byte[64 * 1024], b = new byte[64 * 1024];
            Assert.Equal(a.Length, original.Read(run.PhysicalAddress, a));
            Assert.Equal(b.Length, copy.Read(run.PhysicalAddress, b));
            Assert.Equal(a, b);
        }
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
        (string disk, _, _) = Disk(dir, 0x83, junk, 0);
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
