using System.Text.Json;
using Amazon.S3;
using Amazon.S3.Model;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.RemoteCaptures;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Remote;
using Xunit.Abstractions;

namespace CloudMem.Tests.Remote;

/// <summary>
/// Captures analysed in place from s3rver and azurite (their real wire protocols on 127.0.0.1): the same rows as the
/// local file, while fetching a small part of the object; faults on the wire change nothing; bad objects are one line.
/// </summary>
[Collection("remote stores")]
public sealed class RemoteCaptureTests(RemoteStores stores, ITestOutputHelper output)
{
    /// <summary>The ISF of the fixture's kernel (shared/peers/linux-RELEASE.json.xz), skipping when absent.</summary>
    private static string FixtureIsf()
    {
        string release = Fixture.Truth().RootElement.GetProperty("kernel").GetProperty("uname").GetString()!.Split(' ')[2];
        return SharedFiles.Require("peers", $"linux-{release}.json.xz");
    }

    private static string Rows(LinuxContext context) => JsonSerializer.Serialize(LinuxProcesses.List(context).Processes);

    /// <summary>linux.pslist rows of the local fixture file and of the same file read in place from <paramref name="store"/>.</summary>
    private (string Expected, string Rows, RunMappedMemory Remote) LocalAndRemote(string store, string file, LinuxOptions options)
    {
        string path = Fixture.Require(file);
        string expected;
        using (RunMappedMemory local = CaptureOpener.Open(path))
        {
            expected = Rows(LinuxContext.Open(local, options));
        }
        RunMappedMemory remote = RemoteCaptureOpener.Open(stores.Url(store, path, file), environment: stores.Environment(store));
        string rows = Rows(LinuxContext.Open(remote, options));
        output.WriteLine(remote.RemoteStats!.ToString());
        return (expected, rows, remote);
    }

    [SkippableTheory]
    [InlineData("s3", "memory.lime")]
    [InlineData("s3", "memory.kdump-snappy")]
    [InlineData("blob", "memory.lime")]
    [InlineData("blob", "memory.kdump-snappy")]
    public void Linux_pslist_in_place_returns_the_local_rows_fetching_at_most_5_percent(string store, string file)
    {
        (string expected, string rows, RunMappedMemory remote) = LocalAndRemote(store, file, new LinuxOptions(IsfPath: FixtureIsf()));
        using RunMappedMemory _ = remote;

        RemoteReadStats stats = remote.RemoteStats!;
        Assert.Equal(expected, rows);
        Assert.Equal(0, stats.Failures);
        Assert.True(stats.PercentFetched <= 5.0, $"fetched {stats.PercentFetched:0.00}% of the object: {stats}");
    }

    [SkippableTheory]
    [InlineData("memory.avml", 100.0)]             // no chunk index in the format: opening walks every chunk header
    [InlineData("memory.kdump-zlib", 5.0)]
    [InlineData("memory.kdump-lzo.flat", 30.0)]    // a stream format: opening walks every record header to build the index (26%)
    public void Other_compressed_formats_in_place_return_the_local_rows(string file, double mostPercent)
    {
        (string expected, string rows, RunMappedMemory remote) = LocalAndRemote("s3", file, new LinuxOptions(IsfPath: FixtureIsf()));
        using RunMappedMemory _ = remote;

        Assert.Equal(expected, rows);
        Assert.Equal((0, 0L), (remote.RemoteStats!.Failures, remote.DecodeFailures));
        Assert.True(remote.RemoteStats.PercentFetched <= mostPercent, remote.RemoteStats.ToString());
    }

    [SkippableTheory]
    [InlineData("memory.lime", 48 * 1024)]        // the head (one 16 KiB block) and the second range header's block
    [InlineData("memory.kdump-snappy", 256 * 1024)] // the head, the sub-header with VMCOREINFO, two bitmaps for 4 GiB of PFNs
    public void Opening_fetches_only_the_head_and_the_format_structures(string file, int most)
    {
        string path = Fixture.Require(file);
        using RunMappedMemory remote = RemoteCaptureOpener.Open(stores.Url("s3", path, file), environment: stores.Environment("s3"));
        using RunMappedMemory local = CaptureOpener.Open(path);

        output.WriteLine(remote.RemoteStats!.ToString());
        Assert.Equal(local.Runs, remote.Runs);
        Assert.True(remote.RemoteStats!.BytesFetched <= most, remote.RemoteStats.ToString());
        Assert.True(remote.RemoteStats.PercentFetched < 1, remote.RemoteStats.ToString());
    }

    [SkippableFact]
    public void Without_symbol_files_the_kernel_is_found_by_scanning_and_the_rows_still_match()
    {
        (string expected, string rows, RunMappedMemory remote) = LocalAndRemote("blob", "memory.kdump-snappy", new LinuxOptions());
        using RunMappedMemory _ = remote;

        Assert.Equal(expected, rows);
        Assert.Equal(0, remote.RemoteStats!.Failures);
    }

    [SkippableTheory]
    [InlineData("s3", "memory.lime")]
    [InlineData("blob", "memory.kdump-snappy")]
    public void From_the_image_alone_a_warm_profile_cache_keeps_a_remote_pslist_to_at_most_5_percent(string store, string file)
    {
        // No symbol file: the first command finds the kernel by scanning (half the object or more); it leaves this
        // kernel build's kallsyms and BTF types and the banner's place in the profile cache, so the next command on the
        // same capture reads the banner, the KASLR slide, the BTF blob to check it, and what pslist walks.
        using var dir = new TempDir();
        var options = new LinuxOptions(Cache: new ProfileCache(dir.File("profiles")));
        string expected;
        using (RunMappedMemory local = CaptureOpener.Open(Fixture.Require(file)))
        {
            expected = Rows(LinuxContext.Open(local, new LinuxOptions()));
        }
        using (RunMappedMemory filling = RemoteCaptureOpener.Open(stores.Url(store, Fixture.Require(file), file), environment: stores.Environment(store)))
        {
            Assert.Equal(expected, Rows(LinuxContext.Open(filling, options)));
            output.WriteLine($"cold, filling the cache: {filling.RemoteStats}");
        }

        using RunMappedMemory warm = RemoteCaptureOpener.Open(stores.Url(store, Fixture.Require(file), file), environment: stores.Environment(store));
        LinuxContext context = LinuxContext.Open(warm, options);
        Assert.Contains(context.Kernel.Steps, s => s.Contains("profile-cache hint; no scan", StringComparison.Ordinal));
        Assert.Equal(expected, Rows(context));
        output.WriteLine($"warm: {warm.RemoteStats}");
        Assert.Equal(0, warm.RemoteStats!.Failures);
        Assert.True(warm.RemoteStats.PercentFetched <= 5.0, $"fetched {warm.RemoteStats.PercentFetched:0.00}% of the object: {warm.RemoteStats}");
    }

    [SkippableFact]
    public void Dropped_connections_503s_and_slow_responses_change_nothing_in_the_rows()
    {
        string path = Fixture.Require("memory.lime");
        var options = new LinuxOptions(IsfPath: FixtureIsf());
        string expected;
        using (RunMappedMemory local = CaptureOpener.Open(path))
        {
            expected = Rows(LinuxContext.Open(local, options));
        }
        stores.Upload("s3", path, "memory.lime");
        using var proxy = new FaultyProxy(stores.S3.Port);

        using RunMappedMemory remote = RemoteCaptureOpener.Open(stores.S3Url("memory.lime"), environment: RemoteStores.Lookup(stores.S3Environment(proxy.Url)));
        string rows = Rows(LinuxContext.Open(remote, options));

        output.WriteLine($"{remote.RemoteStats}; proxy: {proxy.Unavailable} 503s, {proxy.Dropped} dropped, {proxy.Delayed} delayed");
        Assert.Equal(expected, rows);
        Assert.Equal(0, remote.RemoteStats!.Failures);
        Assert.True(proxy.Unavailable >= 5 && proxy.Dropped >= 5 && proxy.Delayed >= 5, $"too few faults injected: {proxy.Unavailable} 503s, {proxy.Dropped} dropped, {proxy.Delayed} delayed");
    }

    [SkippableTheory]
    [InlineData("s3")]
    [InlineData("blob")]
    public void Windows_pslist_in_place_on_a_builder_image_returns_the_local_rows(string store)
    {
        (string root, TypeModel types) = WindowsSymbols.Load(WindowsSymbols.Win10);
        using var dir = new TempDir();
        (byte[] image, WindowsImageManifest _) = new WindowsImageBuilder(types, WindowsSymbols.Win10, 1).Build(WindowsImageBuilder.TypicalScenario());
        string path = dir.Write("win10.raw", image);
        string expected;
        using (RunMappedMemory local = CaptureOpener.Open(path))
        {
            expected = JsonSerializer.Serialize(WindowsProcesses.List(WindowsKernel.Open(local, new SymbolStore([root]))).Processes);
        }

        using RunMappedMemory remote = RemoteCaptureOpener.Open(stores.Url(store, path, $"win10-{store}.raw"), environment: stores.Environment(store));
        string rows = JsonSerializer.Serialize(WindowsProcesses.List(WindowsKernel.Open(remote, new SymbolStore([root]))).Processes);

        // The low stub gives the DTB and the kernel below its entry hint in a few reads (no scan of every page).
        output.WriteLine(remote.RemoteStats!.ToString());
        Assert.Equal(expected, rows);
        Assert.Equal(0, remote.RemoteStats!.Failures);
        Assert.True(remote.RemoteStats.PercentFetched <= 5, remote.RemoteStats.ToString());
    }

    [SkippableFact]
    public void A_presigned_url_is_read_with_ranges_over_plain_http()
    {
        string path = Fixture.Require("memory.lime");
        stores.Upload("s3", path, "memory.lime");
        using IAmazonS3 s3 = stores.S3Client();
        string url = s3.GetPreSignedURL(new GetPreSignedUrlRequest { BucketName = RemoteStores.Bucket, Key = "memory.lime", Expires = DateTime.UtcNow.AddHours(1), Protocol = Protocol.HTTP });
        Assert.Contains("Signature", url);

        using RunMappedMemory remote = RemoteCaptureOpener.Open(url, environment: _ => null);
        using RunMappedMemory local = CaptureOpener.Open(path);

        Assert.Equal(local.Runs, remote.Runs);
        Assert.DoesNotContain("?", remote.RemoteStats!.DisplayName);
        var a = new byte[1 << 20];
        var b = new byte[1 << 20];
        Assert.Equal(local.Read(0x6400000, a), remote.Read(0x6400000, b));
        Assert.True(a.AsSpan().SequenceEqual(b));
    }
}

/// <summary>The CLI on remote captures: --stats, and bad objects as one line naming the address, exit code 2.</summary>
[Collection("remote stores")]
public sealed class RemoteCaptureCliTests(RemoteStores stores)
{
    [SkippableFact]
    public void Linux_pslist_on_s3_prints_the_local_rows_and_stats_on_stderr()
    {
        string path = Fixture.Require("memory.kdump-snappy");
        string url = stores.Url("s3", path, "memory.kdump-snappy");
        (int localExit, string localOut, _) = CliRunner.Run(null, null, "linux.pslist", path, "--output", "json");

        (int exit, string stdout, string stderr) = CliRunner.Run(stores.S3Environment(), null, "linux.pslist", url, "--output", "json", "--stats");

        Assert.Equal((0, 0), (localExit, exit));
        Assert.Equal(localOut, stdout);
        Assert.Matches(@"cloudmem: stats: s3://evidence/memory\.kdump-snappy: fetched \d+ bytes \([\d.]+% of \d+\) in \d+ requests; cache hits \d+, misses \d+; failed requests 0", stderr);
    }

    [SkippableFact]
    public void A_missing_object_is_one_line_naming_it_and_exit_2()
    {
        stores.Upload("s3", Fixture.Require("memory.kdump-snappy"), "memory.kdump-snappy");
        (int exit, _, string stderr) = CliRunner.Run(stores.S3Environment(), null, "linux.pslist", "s3://evidence/no-such.lime");

        Assert.Equal(2, exit);
        Assert.Equal("cloudmem: error: s3://evidence/no-such.lime: HeadObject: no such object (404)", stderr.Trim());
    }

    [SkippableFact]
    public void Access_denied_is_one_line_without_the_credentials_and_exit_2()
    {
        stores.Upload("s3", Fixture.Require("memory.kdump-snappy"), "memory.kdump-snappy");
        (int exit, _, string stderr) = CliRunner.Run(stores.S3Environment(secret: "wrong-secret-key-value", accessKey: "AKIDNOTREGISTERED"), null, "info", "s3://evidence/memory.kdump-snappy");

        Assert.Equal(2, exit);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.True(stderr.StartsWith("cloudmem: error: s3://evidence/memory.kdump-snappy: HeadObject: access denied (403", StringComparison.Ordinal), stderr);
        Assert.DoesNotContain("wrong-secret-key-value", stderr);
        Assert.DoesNotContain("AKIDNOTREGISTERED", stderr);
    }

    [SkippableFact]
    public void An_object_that_is_not_a_capture_is_one_line_naming_the_structure_and_exit_2()
    {
        using var dir = new TempDir();
        stores.Upload("blob", dir.Write("notes.txt", "a text file, not memory\n"u8.ToArray()), "notes.txt");
        string url = stores.BlobUrl("notes.txt");

        (int exit, _, string stderr) = CliRunner.Run(stores.BlobEnvironment(), null, "info", url);

        Assert.Equal(2, exit);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.StartsWith($"cloudmem: error: {url}: raw ", stderr);
    }

    [SkippableFact]
    public void A_sas_signature_is_never_printed()
    {
        string url = $"{stores.Azurite.ServiceUri}/nocontainer/missing.lime?sv=2023-01-03&sr=b&sig=SECRETSIGNATURE%3D&se=2099-01-01";

        (int exit, _, string stderr) = CliRunner.Run(null, null, "info", url, "--stats");

        Assert.Equal(2, exit);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.StartsWith($"cloudmem: error: {stores.Azurite.ServiceUri}/nocontainer/missing.lime: GetProperties: ", stderr);
        Assert.DoesNotContain("SECRETSIGNATURE", stderr);
    }
}

[CollectionDefinition("remote stores")]
public sealed class RemoteStoresCollection : ICollectionFixture<RemoteStores>;
