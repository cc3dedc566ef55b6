using System.Diagnostics;
using System.Globalization;
using System.Text;
using Amazon.S3;
using Amazon.S3.Model;
using Azure.Storage.Blobs;
using CloudMem.Engine.Linux;
using CloudMem.RemoteCaptures;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Remote;

/// <summary>
/// linux.pslist on the basic fixture read in place from s3rver and azurite vs downloaded first and analysed locally:
/// wall time (median of 3 cold runs, each with a new cache) and bytes fetched. Runs only with CLOUDMEM_BENCH=1
/// (tests/bench/remote-bench.sh), which writes the table to CLOUDMEM_BENCH_OUT.
/// </summary>
[Trait("Category", "Benchmark")]
[Collection("remote stores")]
public sealed class RemoteCaptureBench(RemoteStores stores)
{
    private const int Runs = 3;

    [SkippableFact]
    public void Remote_pslist_against_download_then_analyse()
    {
        Skip.IfNot(Environment.GetEnvironmentVariable("CLOUDMEM_BENCH") == "1", "benchmark: set CLOUDMEM_BENCH=1 (tests/bench/remote-bench.sh)");
        string release = Fixture.Truth().RootElement.GetProperty("kernel").GetProperty("uname").GetString()!.Split(' ')[2];
        string isf = SharedFiles.Require("peers", $"linux-{release}.json.xz");
        var table = new StringBuilder();
        table.AppendLine("| store | capture (object size) | symbols | in place: time | in place: fetched | requests | download + analyse: time | download: bytes |");
        table.AppendLine("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (string store in new[] { "s3", "blob" })
        {
            foreach (string file in new[] { "memory.lime", "memory.kdump-snappy" })
            {
                string path = Fixture.Require(file);
                string url = stores.Url(store, path, file);
                foreach (string? symbols in new[] { isf, null })
                {
                    var options = new LinuxOptions(IsfPath: symbols);
                    int expected = 0;
                    (double remoteMs, long fetched, long requests) = Median(() =>
                    {
                        var clock = Stopwatch.StartNew();
                        using RunMappedMemory remote = RemoteCaptureOpener.Open(url, environment: stores.Environment(store));
                        int rows = LinuxProcesses.List(LinuxContext.Open(remote, options)).Processes.Count;
                        clock.Stop();
                        Assert.True(rows > 0);
                        expected = rows;
                        return (clock.Elapsed.TotalMilliseconds, remote.RemoteStats!.BytesFetched, remote.RemoteStats.Requests);
                    });
                    (double downloadMs, long downloaded, _) = Median(() =>
                    {
                        using var dir = new TempDir();
                        string local = Path.Combine(dir.Path, file);
                        var clock = Stopwatch.StartNew();
                        Download(store, url, file, local);
                        using RunMappedMemory memory = CaptureOpener.Open(local);
                        int rows = LinuxProcesses.List(LinuxContext.Open(memory, options)).Processes.Count;
                        clock.Stop();
                        Assert.Equal(expected, rows);
                        return (clock.Elapsed.TotalMilliseconds, new FileInfo(local).Length, 0L);
                    });
                    table.AppendLine(string.Create(CultureInfo.InvariantCulture,
                        $"| {store} | {file} ({Mib(downloaded)}) | {(symbols is null ? "none (scan)" : "ISF")} | {remoteMs / 1000:0.00} s | {Mib(fetched)} ({100.0 * fetched / downloaded:0.00}%) | {requests} | {downloadMs / 1000:0.00} s | {Mib(downloaded)} |"));
                }
            }
        }
        string text = table.ToString();
        Console.WriteLine(text);
        if (Environment.GetEnvironmentVariable("CLOUDMEM_BENCH_OUT") is { } output)
        {
            File.WriteAllText(output, text);
        }
    }

    private static string Mib(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1048576.0:0.0} MiB");

    private static (double Ms, long Bytes, long Requests) Median(Func<(double, long, long)> run)
    {
        var results = Enumerable.Range(0, Runs).Select(_ => run()).OrderBy(r => r.Item1).ToList();
        return results[Runs / 2];
    }

    private void Download(string store, string url, string key, string local)
    {
        if (store == "s3")
        {
            using IAmazonS3 s3 = stores.S3Client();
            using GetObjectResponse response = s3.GetObjectAsync(RemoteStores.Bucket, key).GetAwaiter().GetResult();
            using FileStream file = File.Create(local);
            response.ResponseStream.CopyTo(file, 4 << 20);
        }
        else
        {
            BlobClient blob = BlobRangeReader.CreateClient(RemoteLocation.Parse(url), stores.Environment("blob"));
            blob.DownloadTo(local);
        }
    }
}
