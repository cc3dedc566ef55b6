using System.Buffers.Binary;
using System.Security.Cryptography;
using CloudMem.Connectors.Core;
using CloudMem.Engine.Convert;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Connectors;

/// <summary>
/// Disk images holding a real hibernation image, for the snapshot read-back tests of every cloud: the fixture memory
/// written by our own swsusp / hiberfil writers, laid into a partition of an MBR disk.
/// </summary>
internal static class HibernationDisks
{
    public const long MiB = 1 << 20;

    /// <summary>A hibernation image of the fixture memory written by our own writer.</summary>
    public static string Image(TempDir dir, string target, string? variant)
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
    public static (string Disk, long PayloadStart, long PartitionEnd) Disk(TempDir dir, byte type, string payload, long offsetInPartition)
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

    public static string Sha256(string path, long start, long end)
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

    /// <summary>
    /// Checks a hibernation capture's manifest: Completed, one verified evidence item of <paramref name="kind"/> whose
    /// hash is that of exactly the disk bytes from the payload to its partition's end (on our side and as carved), and
    /// whose copy opens and holds the fixture's memory. Returns the evidence.
    /// </summary>
    public static EvidenceRecord AssertCompleted(CustodyManifest manifest, string kind, string disk, long payloadStart, long partitionEnd)
    {
        Assert.True(manifest.Status == CustodyStatus.Completed, manifest.Error);
        EvidenceRecord evidence = Assert.Single(manifest.Evidence);
        Assert.True(evidence.Verified, evidence.Problem);
        Assert.StartsWith($"hibernation-{kind}-", evidence.Name, StringComparison.Ordinal);
        Assert.Contains(kind, evidence.OpenedAs, StringComparison.Ordinal);
        Assert.Equal(Sha256(disk, payloadStart, partitionEnd), evidence.Sha256);
        Assert.Equal(evidence.Sha256, evidence.SourceSha256);
        using RunMappedMemory copy = CaptureOpener.Open(evidence.LocalPath!);
        using RunMappedMemory original = CaptureOpener.Open(Fixture.Require("memory.lime"));
        PhysicalRun run = original.Runs[original.Runs.Count / 2];
        byte[] a = new byte[64 * 1024], b = new byte[64 * 1024];
        Assert.Equal(a.Length, original.Read(run.PhysicalAddress, a));
        Assert.Equal(b.Length, copy.Read(run.PhysicalAddress, b));
        Assert.Equal(a, b);
        return evidence;
    }
}
