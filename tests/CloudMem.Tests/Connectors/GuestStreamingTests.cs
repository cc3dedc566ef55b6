using System.Security.Cryptography;
using Azure.Storage.Blobs.Models;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Connectors.Aws;
using CloudMem.Tests.Connectors.Azure;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors;

/// <summary>
/// The Linux guest scripts (Azure: sh + Put Block; AWS: bash + presigned UploadPart) run for real against azurite and
/// s3rver, under strace, with the memory source substituted: the staged "tool" is a stand-in that cats a real fixture
/// capture to the output path the script gives it (/dev/stdout, the pipe), where AVML would read /proc/kcore. They
/// must upload exactly the fixture's bytes, and create or write no file anywhere but their RAM-backed scratch
/// directory (tmpfs), which is gone afterwards. A curl stand-in that behaves like Ubuntu 20.04's curl 7.68 (no
/// --retry-all-errors) shows the feature detection and the script's own retry loop.
/// </summary>
public sealed class GuestStreamingTests(AzuriteHost azurite) : IClassFixture<AzuriteHost>
{
    private static string Sha256File(string path)
    {
        using FileStream file = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(file));
    }

    private static void AssertNothingWrittenOutsideRam(GuestWriteTrace trace, string guestOutput)
    {
        (string ram, string fsType) = GuestWriteTrace.Scratch(guestOutput);
        Assert.Contains(fsType, new[] { "tmpfs", "ramfs" });
        IReadOnlyList<string> outside = trace.WritesOutsideRam(ram, out int inRam);
        Assert.True(outside.Count == 0, "written outside the RAM directory:\n" + string.Join("\n", outside.Take(20)));
        Assert.True(inRam > 3, $"the trace saw only {inRam} writes in {ram}: strace did not follow the script");
        Assert.False(Directory.Exists(ram), $"{ram} was not removed");
    }

    /// <summary>A curl that behaves like curl 7.68 about --retry-all-errors (7.71+): not in its help, refused as an option.</summary>
    private static string OldCurl(TempDir dir)
    {
        string bin = Directory.CreateDirectory(dir.File("oldcurl")).FullName;
        string curl = Path.Combine(bin, "curl");
        File.WriteAllText(curl, """
#!/bin/sh
# stand-in for curl 7.68 (Ubuntu 20.04): no --retry-all-errors
for a; do [ "$a" = "--retry-all-errors" ] && { echo "curl: option --retry-all-errors: is unknown" >&2; exit 2; }; done
case "${1:-}" in
    --help) /usr/bin/curl "$@" | grep -v -e --retry-all-errors; exit 0 ;;
    --version) echo "curl 7.68.0 (x86_64-pc-linux-gnu) libcurl/7.68.0"; exit 0 ;;
esac
exec /usr/bin/curl "$@"
""");
        Skip.IfNot(OperatingSystem.IsLinux(), "the guest scripts run on Linux");
#pragma warning disable CA1416 // Linux only: guarded above
        File.SetUnixFileMode(curl, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
#pragma warning restore CA1416
        return bin + ":" + Environment.GetEnvironmentVariable("PATH");
    }

    [SkippableFact]
    public async Task Azure_LinuxScript_StreamsByteIdenticalBlocks_AndWritesNothingOutsideRam()
    {
        string fixture = Fixture.Require("memory.avml");
        await using var bed = new AzureTestBed(azurite, fixture);
        using var trace = new GuestWriteTrace();
        bed.Arm.GuestPrefix = trace.Prefix;

        CaptureResult result = await bed.Connector(bed.Request(download: false)).CaptureAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        string output = bed.Arm.LastGuestOutput!;
        string fixtureSha = Sha256File(fixture);
        Assert.Contains($"CLOUDMEM_RESULT {new FileInfo(fixture).Length} {fixtureSha} ", output);
        BlobDownloadStreamingResult blob = (await bed.ContainerClient.GetBlobClient(result.Manifest.Evidence[0].Name).DownloadStreamingAsync()).Value;
        await using (Stream content = blob.Content)
        {
            Assert.Equal(fixtureSha, Convert.ToHexStringLower(await SHA256.HashDataAsync(content)));
        }
        Assert.Contains("retry:all-errors", output);
        AssertNothingWrittenOutsideRam(trace, output);
    }

    [SkippableFact]
    public async Task Azure_LinuxScript_WithCurl768_UsesItsOwnRetryLoop_ThroughADroppedConnection()
    {
        string fixture = Fixture.Require("memory.avml");
        using var temp = new TempDir();
        // Cut one upload connection after 2 MiB (inside the first Put Block): only the script's loop can retry it.
        using var proxy = new FlakyProxy(azurite.Port, 2 << 20, true);
        await using var bed = new AzureTestBed(azurite, fixture, containerPort: proxy.Port);
        bed.Arm.GuestEnvironment["PATH"] = OldCurl(temp);

        CaptureResult result = await bed.Connector(bed.Request(download: false)).CaptureAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        Assert.Equal(1, proxy.Cuts);
        string output = bed.Arm.LastGuestOutput!;
        Assert.Contains("CLOUDMEM_CURL 7.68.0 retry:loop", output);
        Assert.Contains("CLOUDMEM_RETRY 1 1", output);
        Assert.Equal(Sha256File(fixture), result.Manifest.Evidence[0].Sha256);
    }

    [SkippableFact]
    public async Task Aws_BashScript_StreamsByteIdenticalParts_AndWritesNothingOutsideRam()
    {
        string fixture = Fixture.Require("memory.lime");
        using var world = new AwsHarness(fixture);
        using var trace = new GuestWriteTrace();
        world.Fake.GuestPrefix = trace.Prefix;

        CaptureResult result = await world.Connector().CaptureAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        string output = Assert.Single(world.Fake.GuestOutputs);
        string fixtureSha = Sha256File(fixture);
        Assert.Contains($"CLOUDMEM_RESULT {new FileInfo(fixture).Length} {fixtureSha} ", output);
        string key = result.Manifest.Evidence[0].Uri["s3://evidence/".Length..];
        using (var stored = await world.Clients.S3.GetObjectAsync(AwsHarness.Bucket, key))
        {
            Assert.Equal(fixtureSha, (await Sha256Sink.HashAsync(stored.ResponseStream)).Sha256);
        }
        AssertNothingWrittenOutsideRam(trace, output);
    }

    [SkippableFact]
    public async Task Aws_BashScript_WithCurl768_DetectsIt_AndStillCompletes()
    {
        string fixture = Fixture.Require("memory.lime");
        using var temp = new TempDir();
        using var world = new AwsHarness(fixture);
        world.Fake.GuestEnvironment["PATH"] = OldCurl(temp);

        CaptureResult result = await world.Connector().CaptureAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        Assert.Contains("CLOUDMEM_CURL 7.68.0 retry:loop", Assert.Single(world.Fake.GuestOutputs));
        Assert.Equal(Sha256File(fixture), result.Manifest.Evidence[0].Sha256);
    }
}
