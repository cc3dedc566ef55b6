using System.Security.Cryptography;
using System.Text.Json;
using Amazon.S3;
using Amazon.S3.Model;
using CloudMem.Tests.Analysis;
using CloudMem.Tests.Connectors.Aws;
using CloudMem.Tests.Remote;
using CloudMem.Tests.Support;
using Xunit.Abstractions;

namespace CloudMem.Tests.Fleet;

/// <summary>
/// cloudmem fleet step (the AWS Distributed Map's item) against s3rver: the capture is read in place from S3, its case
/// directory uploaded under CASE/captures/&lt;id&gt;/ byte for byte as the marker lists it, the marker written last;
/// a second run of the same item (a Step Functions retry) finds the marker and analyses nothing.
/// </summary>
public sealed class FleetStepTests(AnalyzedImages images, ITestOutputHelper output) : IClassFixture<AnalyzedImages>
{
    [SkippableFact]
    public async Task Step_analyses_an_s3_capture_in_place_uploads_the_case_then_the_marker_and_a_rerun_skips()
    {
        (string raw, string symbols) = images.WindowsBuilt("attack");
        using var s3rver = new S3Emulator(RemoteStores.Bucket, RemoteStores.AccessKey, RemoteStores.SecretKey);
        Dictionary<string, string> environment = S3Environment(s3rver);
        using IAmazonS3 s3 = CloudMem.RemoteCaptures.S3RangeReader.CreateClient(RemoteStores.Lookup(environment));
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = RemoteStores.Bucket, Key = "IR-9/captures-in/dc01 win10.raw", FilePath = raw, UseChunkEncoding = false });
        string[] args = ["fleet", "step", $"s3://{RemoteStores.Bucket}/IR-9/captures-in/dc01%20win10.raw", "--case", $"s3://{RemoteStores.Bucket}/IR-9/case", "--symbols", symbols];

        (int exit, string stdout, string stderr) = CliRunner.Run(environment, null, args);
        output.WriteLine(stdout + stderr);
        Assert.True(exit == 0, stdout + stderr);

        // The marker is the last object, listing every file of the case with its size and SHA-256.
        const string Id = "dc01_win10.raw";
        using JsonDocument marker = JsonDocument.Parse(await Text(s3, $"IR-9/case/.fleet/done/{Id}.json"));
        Assert.Equal("done", marker.RootElement.GetProperty("status").GetString());
        Assert.Equal(3, marker.RootElement.GetProperty("findings").GetProperty("critical").GetInt32());
        var listed = marker.RootElement.GetProperty("files").EnumerateArray()
            .ToDictionary(f => f.GetProperty("name").GetString()!, f => f.GetProperty("sha256").GetString()!);
        Assert.Superset(new HashSet<string> { "case.sqlite", "findings.jsonl", "report.html", "report.md", "timeline.body" }, listed.Keys.ToHashSet());
        List<S3Object> objects = await List(s3, $"IR-9/case/captures/{Id}/");
        Assert.Equal(listed.Keys.Order(StringComparer.Ordinal), objects.Select(o => o.Key[$"IR-9/case/captures/{Id}/".Length..]).Order(StringComparer.Ordinal));
        foreach ((string name, string sha256) in listed)
        {
            using GetObjectResponse response = await s3.GetObjectAsync(RemoteStores.Bucket, $"IR-9/case/captures/{Id}/{name}");
            using var body = new MemoryStream();
            await response.ResponseStream.CopyToAsync(body);
            Assert.Equal(sha256, Convert.ToHexStringLower(SHA256.HashData(body.ToArray())));
        }
        string findings = await Text(s3, $"IR-9/case/captures/{Id}/findings.jsonl");
        Assert.Contains("\"ruleId\":\"CM-WIN-008\"", findings, StringComparison.Ordinal);   // the unlinked rootkit.sys of scenarios/attack.json
        Assert.Single(await List(s3, $"IR-9/case/.fleet/attempts/{Id}/"));

        // The same item again (a retry after the task was reported lost): skipped, no second analysis started.
        (exit, stdout, stderr) = CliRunner.Run(environment, null, args);
        Assert.True(exit == 0, stdout + stderr);
        Assert.Contains("complete already", stdout, StringComparison.Ordinal);
        Assert.Single(await List(s3, $"IR-9/case/.fleet/attempts/{Id}/"));

        // A missing capture fails with one line naming it (the Map counts it against ToleratedFailurePercentage).
        (exit, stdout, stderr) = CliRunner.Run(environment, null, "fleet", "step", $"s3://{RemoteStores.Bucket}/IR-9/captures-in/missing.raw", "--case", $"s3://{RemoteStores.Bucket}/IR-9/case");
        Assert.Equal(2, exit);
        Assert.Contains("missing.raw", stderr, StringComparison.Ordinal);
        Assert.Single(stderr.Trim().Split('\n'));
        Assert.Empty(await List(s3, "IR-9/case/captures/missing.raw/"));
    }

    [SkippableFact]
    public async Task Fleet_analyze_over_an_s3_prefix_reads_each_capture_in_place()
    {
        (string attack, string symbols) = images.WindowsBuilt("attack");
        (string clean, _) = images.WindowsBuilt("clean");
        using var s3rver = new S3Emulator(RemoteStores.Bucket, RemoteStores.AccessKey, RemoteStores.SecretKey);
        using var azurite = new Connectors.Azure.DurableAzurite();
        Dictionary<string, string> environment = S3Environment(s3rver);
        using IAmazonS3 s3 = CloudMem.RemoteCaptures.S3RangeReader.CreateClient(RemoteStores.Lookup(environment));
        foreach ((string key, string path) in new[] { ("IR-5/hosts/dc01.raw", attack), ("IR-5/hosts/ws01.raw", clean), ("IR-5/other/ws09.raw", clean) })
        {
            await s3.PutObjectAsync(new PutObjectRequest { BucketName = RemoteStores.Bucket, Key = key, FilePath = path, UseChunkEncoding = false });
        }
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = RemoteStores.Bucket, Key = "IR-5/hosts/dc01.custody.json", ContentBody = "{}", UseChunkEncoding = false });
        using var dir = new TempDir();
        string caseDir = Path.Combine(dir.Path, "IR-5.fleet");
        using var fleet = new CliProcess(["fleet", "analyze", $"s3://{RemoteStores.Bucket}/IR-5/hosts/", "--out", caseDir, "--workers", "2",
            "--storage", azurite.Host.ConnectionString, "--symbols", symbols], environment);
        Assert.True(fleet.WaitForExit(TimeSpan.FromMinutes(4)), fleet.Output);
        output.WriteLine(fleet.Output);

        Assert.True(fleet.ExitCode == 0, fleet.Output);
        // Only the captures under the prefix (not the manifest beside them, not another prefix), by their names.
        Assert.Equal(["dc01.raw", "ws01.raw"], Directory.GetDirectories(Path.Combine(caseDir, "captures")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        using JsonDocument fleetJson = JsonDocument.Parse(File.ReadAllText(Path.Combine(caseDir, "fleet.json")));
        Assert.Equal([$"s3://{RemoteStores.Bucket}/IR-5/hosts/dc01.raw", $"s3://{RemoteStores.Bucket}/IR-5/hosts/ws01.raw"],
            fleetJson.RootElement.GetProperty("captures").EnumerateArray().Select(c => c.GetProperty("capture").GetString()));
        Assert.Contains("\"ruleId\":\"CM-WIN-008\"", File.ReadAllText(Path.Combine(caseDir, "captures", "dc01.raw", "findings.jsonl")), StringComparison.Ordinal);
        Assert.DoesNotContain("\"severity\":\"critical\"", File.ReadAllText(Path.Combine(caseDir, "captures", "ws01.raw", "findings.jsonl")), StringComparison.Ordinal);
    }

    /// <summary>What a user of s3rver has in the environment (the CLI under test reads it there).</summary>
    private static Dictionary<string, string> S3Environment(S3Emulator s3rver) => new()
    {
        ["AWS_ACCESS_KEY_ID"] = RemoteStores.AccessKey,
        ["AWS_SECRET_ACCESS_KEY"] = RemoteStores.SecretKey,
        ["AWS_ENDPOINT_URL_S3"] = s3rver.Url,
        ["AWS_REGION"] = "us-east-1",
    };

    private static async Task<string> Text(IAmazonS3 s3, string key)
    {
        using GetObjectResponse response = await s3.GetObjectAsync(RemoteStores.Bucket, key);
        using var reader = new StreamReader(response.ResponseStream);
        return await reader.ReadToEndAsync();
    }

    private static async Task<List<S3Object>> List(IAmazonS3 s3, string prefix)
        => (await s3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = RemoteStores.Bucket, Prefix = prefix })).S3Objects ?? [];
}
