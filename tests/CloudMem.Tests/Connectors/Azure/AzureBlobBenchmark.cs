using System.Diagnostics;
using System.Globalization;
using Azure.Storage;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;
using Xunit.Abstractions;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// Opt-in (CLOUDMEM_BENCH=1): upload and download of the 1 GiB capture (.fixtures/big/memory.raw) through azurite
/// with the SDK settings the connector uses (download = the connector's read back: SHA-256 while streaming into a
/// local copy). Prints throughput and peak RSS of this process (sampled) and of azurite (VmHWM); docs/BENCHMARKS.md.
/// </summary>
[Trait("Category", "Benchmark")]
public sealed class AzureBlobBenchmark(AzuriteHost azurite, ITestOutputHelper output) : IClassFixture<AzuriteHost>
{
    [SkippableFact]
    public async Task UploadAndDownload_1GiB()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("CLOUDMEM_BENCH") == "1", "benchmark: set CLOUDMEM_BENCH=1");
        string source = Fixture.Require("memory.raw", "big");
        long length = new FileInfo(source).Length;
        string container = azurite.NewContainer();
        BlobClient blob = azurite.Service.GetBlobContainerClient(container).GetBlobClient("bench/memory.raw");
        using var temp = new TempDir();

        (string upSha, double upSeconds, long upRss) = await Measure(async () =>
        {
            await using FileStream file = new(source, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
            await using var hashing = new HashingStream(file, leaveOpen: true);
            await blob.UploadAsync(hashing, new BlobUploadOptions
            {
                TransferOptions = new StorageTransferOptions { MaximumTransferSize = 8 << 20, InitialTransferSize = 8 << 20, MaximumConcurrency = 4 },
            });
            return hashing.Sha256Hex;
        });
        (string downSha, double downSeconds, long downRss) = await Measure(async () =>
        {
            BlobDownloadStreamingResult download = (await blob.DownloadStreamingAsync()).Value;
            await using Stream content = download.Content;
            await using var hashing = new HashingStream(content, leaveOpen: true);
            await using var copy = new FileStream(temp.File("copy.raw"), FileMode.CreateNew, FileAccess.Write, FileShare.None, 1, FileOptions.Asynchronous);
            await Sha256Sink.CopyAsync(hashing, copy);
            return hashing.Sha256Hex;
        });

        Assert.Equal(upSha, downSha);
        string azuriteHwm = File.ReadLines($"/proc/{AzuritePid()}/status").FirstOrDefault(l => l.StartsWith("VmHWM", StringComparison.Ordinal)) ?? "?";
        string report = string.Create(CultureInfo.InvariantCulture,
            $"1 GiB ({length} bytes): upload {length / upSeconds / (1 << 20):0} MiB/s ({upSeconds:0.0} s, peak RSS {upRss >> 20} MiB); " +
            $"download+sha256+local copy {length / downSeconds / (1 << 20):0} MiB/s ({downSeconds:0.0} s, peak RSS {downRss >> 20} MiB); azurite {azuriteHwm.Replace('\t', ' ')}");
        output.WriteLine(report);
        File.WriteAllText(Path.Combine(Path.GetTempPath(), "cloudmem-azure-bench.txt"), report);
    }

    private int AzuritePid()
    {
        int port = azurite.Port;
        // The azurite node process is the one listening on our port: find it among node processes.
        foreach (Process p in Process.GetProcessesByName("node"))
        {
            try
            {
                if (File.ReadAllText($"/proc/{p.Id}/cmdline").Contains(port.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal))
                {
                    return p.Id;
                }
            }
            catch (IOException)
            {
            }
        }
        return Environment.ProcessId;
    }

    private static async Task<(string Sha, double Seconds, long PeakRss)> Measure(Func<Task<string>> work)
    {
        long peak = 0;
        using var stop = new CancellationTokenSource();
        Task sampler = Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                peak = Math.Max(peak, Process.GetCurrentProcess().WorkingSet64);
                await Task.Delay(20);
            }
        });
        var clock = Stopwatch.StartNew();
        string sha = await work();
        clock.Stop();
        stop.Cancel();
        await sampler;
        return (sha, clock.Elapsed.TotalSeconds, peak);
    }
}
