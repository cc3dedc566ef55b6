using System.Globalization;
using System.Text.Json;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>
/// Capture throughput on a 1 GiB real capture (.fixtures/big/memory.raw): upload = guest script -> s3rver (bash + curl,
/// 64 MiB parts), download = s3rver -> local file, hashed while streaming, then opened by our parsers. Peak RSS is this
/// process's (VmHWM reset just before the capture). Runs only with CLOUDMEM_BENCH=1 (tests/bench/aws-capture-bench.sh).
/// </summary>
[Trait("Category", "Benchmark")]
public sealed class AwsCaptureBench
{
    [SkippableFact]
    public async Task Capture_of_one_GiB()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("CLOUDMEM_BENCH") == "1", "benchmark: set CLOUDMEM_BENCH=1 (tests/bench/aws-capture-bench.sh)");
        string fixture = Fixture.Require("memory.raw", "big");
        long length = new FileInfo(fixture).Length;
        using var world = new AwsHarness(fixture, memTotalBytes: length - (32L << 20));
        world.Fake.InstanceMemoryMiB = length >> 20;
        AwsCaptureOptions options = world.Options() with { MinPartBytes = 64L << 20 };

        File.WriteAllText("/proc/self/clear_refs", "5"); // reset VmHWM
        CaptureResult result = await world.Connector(options).CaptureAsync(CancellationToken.None);
        (long hwm, long anon) = Rss();

        CustodyManifest manifest = result.Manifest;
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        DateTimeOffset At(string action) => manifest.Steps.First(s => s.Action == action).Time;
        double upload = (At("command finished") - At("send command")).TotalSeconds;
        double download = (At("stream back") - At("size check")).TotalSeconds;
        double total = ((manifest.CompletedUtc ?? DateTimeOffset.UtcNow) - manifest.StartedUtc).TotalSeconds;
        var figures = new
        {
            bytes = length,
            parts = manifest.Steps.First(s => s.Action == "guest report").Detail,
            uploadSeconds = Math.Round(upload, 2),
            uploadMiBps = Math.Round(length / 1048576.0 / upload, 1),
            downloadHashSeconds = Math.Round(download, 2),
            downloadHashMiBps = Math.Round(length / 1048576.0 / download, 1),
            totalSeconds = Math.Round(total, 2),
            peakRssMiB = Math.Round(hwm / 1024.0, 1),
            rssAnonMiB = Math.Round(anon / 1024.0, 1),
            sha256 = manifest.Evidence[0].Sha256,
        };
        string json = JsonSerializer.Serialize(figures);
        string? output = Environment.GetEnvironmentVariable("CLOUDMEM_BENCH_OUT");
        if (output is not null)
        {
            File.WriteAllText(output, json);
        }
        Console.WriteLine(json);
    }

    private static (long HwmKiB, long AnonKiB) Rss()
    {
        long hwm = 0, anon = 0;
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                hwm = long.Parse(line[6..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
            else if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
            {
                anon = long.Parse(line[8..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
            }
        }
        return (hwm, anon);
    }
}
