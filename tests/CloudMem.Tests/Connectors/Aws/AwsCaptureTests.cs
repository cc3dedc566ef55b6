using System.Diagnostics;
using System.Security.Cryptography;
using System.Text.Json;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>
/// End to end against s3rver and the EC2/SSM fake, with the real SDK clients and the real generated guest script run
/// by bash (curl does the part uploads).
/// </summary>
public sealed class AwsCaptureTests
{
    private static string Sha256(string path)
    {
        using FileStream file = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(file));
    }

    private static async Task<(string Sha, long Length)> StoredObjectAsync(AwsHarness world, string uri)
    {
        string key = uri["s3://evidence/".Length..];
        using var response = await world.Clients.S3.GetObjectAsync(AwsHarness.Bucket, key);
        return await Sha256Sink.HashAsync(response.ResponseStream);
    }

    [SkippableFact]
    public async Task Whole_lime_capture_goes_end_to_end_and_opens()
    {
        string fixture = Fixture.Require("memory.lime");
        using var world = new AwsHarness(fixture);
        using var keys = new TempDir();
        LocalKeySigner.Generate(keys.File("custody.key"), keys.File("custody.pub"));
        using LocalKeySigner signer = LocalKeySigner.Load(keys.File("custody.key"));
        var clock = Stopwatch.StartNew();
        CaptureResult result = await world.Connector(request: world.Request() with { Signer = signer }).CaptureAsync(CancellationToken.None);
        clock.Stop();

        CustodyManifest manifest = CustodyManifest.Read(result.ManifestPath);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        EvidenceRecord evidence = Assert.Single(manifest.Evidence);
        string fixtureSha = Sha256(fixture);
        (string storedSha, long storedLength) = await StoredObjectAsync(world, evidence.Uri);
        Assert.Equal(fixtureSha, evidence.Sha256);
        Assert.Equal(fixtureSha, evidence.SourceSha256);
        Assert.Equal(fixtureSha, storedSha);
        Assert.Equal(new FileInfo(fixture).Length, storedLength);
        Assert.Equal(storedLength, evidence.SizeBytes);
        Assert.StartsWith("LiME", evidence.OpenedAs, StringComparison.Ordinal);
        Assert.True(evidence.Verified);
        Assert.NotNull(evidence.LocalPath);
        Assert.Equal(fixtureSha, Sha256(evidence.LocalPath!));
        // What S3 said about the stored object (s3rver keeps no versions and returns no checksums).
        var head = await world.Clients.S3.GetObjectMetadataAsync(AwsHarness.Bucket, evidence.Uri["s3://evidence/".Length..]);
        Assert.Equal(head.ETag, evidence.Stored?.ETag);
        Assert.Matches("^\"[0-9a-f]{32}(-[0-9]+)?\"$", evidence.Stored?.ETag);
        // The manifest is signed, and the signature is stored beside it in the bucket too.
        Assert.True(ManifestSigning.Verify(result.ManifestPath, trustedPublicKeyPath: keys.File("custody.pub")).Valid);
        string manifestKey = evidence.Uri["s3://evidence/".Length..][..evidence.Uri["s3://evidence/".Length..].LastIndexOf('/')] + "/custody.json";
        using (var sig = await world.Clients.S3.GetObjectAsync(AwsHarness.Bucket, manifestKey + ".sig"))
        using (var reader = new StreamReader(sig.ResponseStream))
        {
            Assert.Equal(await File.ReadAllTextAsync(result.ManifestPath + ".sig"), await reader.ReadToEndAsync());
        }

        // Custody details.
        Assert.Equal("IR-42", manifest.CaseId);
        Assert.Equal(new TriggerRecord("GuardDuty", "7ab2c9f0e1d24b3c"), manifest.Trigger);
        Assert.Equal("arn:aws:iam::123456789012:user/responder", manifest.Operator?.Identity);
        ToolRecord tool = Assert.Single(manifest.Tools);
        Assert.Equal(Sha256(world.ToolFile), tool.Sha256);
        Assert.StartsWith("s3://evidence/cases/tools/avml-", tool.SourceUri, StringComparison.Ordinal);
        // Every call the fake answered during the capture has its request id in the manifest.
        var ids = manifest.RequestIds.Select(r => r.RequestId).ToHashSet();
        foreach (FakeCall call in world.Fake.Calls)
        {
            Assert.Contains(call.RequestId, ids);
        }
        // (s3rver sends no x-amz-request-id: its calls are in the steps, with no request id to record.)
        Assert.Contains(manifest.Steps, s => s.Action == "complete upload");
        Assert.Contains("ec2:CreateTags", world.Fake.Operations);
        Assert.Equal(["ssm:DeleteParameter"], world.Fake.Operations.Where(o => o.Contains("Parameter", StringComparison.Ordinal) && o.Contains("Delete", StringComparison.Ordinal)));

        // The CLI opens the downloaded result.
        (int exit, string stdout, string stderr) = CliRunner.Run(null, null, "info", evidence.LocalPath!, "--output", "json", "--no-banner");
        Assert.True(exit == 0, stderr);
        Assert.Contains("LiME", stdout, StringComparison.Ordinal);

        AssertNoSecrets(world, result.ManifestPath);
        Console.WriteLine($"aws e2e: {storedLength} bytes in {clock.Elapsed.TotalSeconds:0.0} s");
    }

    [Fact]
    public void Stored_object_records_version_etag_and_server_checksums()
    {
        var head = new Amazon.S3.Model.GetObjectMetadataResponse { VersionId = "3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", ETag = "\"abc-3\"", ChecksumSHA256 = "n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=-3", ChecksumType = "COMPOSITE" };
        StoredObjectRecord stored = AwsCaptureConnector.StoredObject(head, null);
        Assert.Equal("3HL4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY", stored.VersionId);
        Assert.Equal("\"abc-3\"", stored.ETag);
        Assert.Equal("n4bQgYhMfWWaL+qgxVrQFaO/TxsrC4Is0V1sFbDwCgg=-3", stored.Checksums!["x-amz-checksum-sha256"]);
        Assert.Equal("COMPOSITE", stored.Checksums["x-amz-checksum-type"]);
        // An unversioned bucket answers version "null": not a version id.
        StoredObjectRecord plain = AwsCaptureConnector.StoredObject(new Amazon.S3.Model.GetObjectMetadataResponse { VersionId = "null", ETag = "\"e\"" }, null);
        Assert.Null(plain.VersionId);
        Assert.Null(plain.Checksums);
    }

    [SkippableFact]
    public async Task A_part_cut_mid_upload_is_retried_without_corrupting_the_evidence()
    {
        string fixture = Fixture.Require("memory.avml");
        using var world = new AwsHarness(fixture, cutPart: 2);
        CaptureResult result = await world.Connector().CaptureAsync(CancellationToken.None);

        Assert.Equal(1, world.Proxy!.Cuts);
        CustodyManifest manifest = result.Manifest;
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        Assert.Contains(manifest.Steps, s => s.Action == "guest retry" && s.Detail.StartsWith("2 1 ", StringComparison.Ordinal));
        string fixtureSha = Sha256(fixture);
        EvidenceRecord evidence = Assert.Single(manifest.Evidence);
        Assert.Equal(fixtureSha, evidence.Sha256);
        Assert.Equal(fixtureSha, (await StoredObjectAsync(world, evidence.Uri)).Sha);
        Assert.StartsWith("AVML", evidence.OpenedAs, StringComparison.Ordinal);
        AssertNoSecrets(world, result.ManifestPath);
    }

    [SkippableFact]
    public async Task A_command_that_stays_in_progress_times_out_with_a_clear_error()
    {
        string fixture = Fixture.Require("memory.avml");
        using var world = new AwsHarness(fixture);
        world.Fake.HangCommands = true;
        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<CaptureTimeoutException>(() => world.Connector(request: world.Request(TimeSpan.FromSeconds(2))).CaptureAsync(CancellationToken.None));
        Assert.Matches(@"^SSM command [0-9a-f-]+ on i-0123456789abcdef0 did not finish within 2 s \(last state: InProgress\)$", error.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(30));
        Assert.Contains("ssm:CancelCommand", world.Fake.Operations);
        // The ticket does not outlive the capture; the manifest says Failed with the same one line.
        Assert.Contains("ssm:DeleteParameter", world.Fake.Operations);
        string manifestPath = Assert.Single(Directory.GetFiles(world.OutputDirectory, "*.custody.json"));
        CustodyManifest manifest = CustodyManifest.Read(manifestPath);
        Assert.Equal(CustodyStatus.Failed, manifest.Status);
        Assert.Equal(error.Message, manifest.Error);
        Assert.Empty(manifest.Evidence);
        AssertNoSecrets(world, manifestPath);
    }

    [SkippableFact]
    public async Task Plan_checks_and_describes_without_mutating_calls()
    {
        string fixture = Fixture.Require("memory.avml");
        using var world = new AwsHarness(fixture);
        CapturePlan plan = await world.Connector().PlanAsync(CancellationToken.None);
        string text = plan.ToText(world.Scrubber);

        Assert.True(plan.Ready, text);
        Assert.Contains("[ok] instance state: running", text, StringComparison.Ordinal);
        Assert.Contains("[ok] ssm agent: Online", text, StringComparison.Ordinal);
        Assert.Contains("send command: SendCommand AWS-RunShellScript", text, StringComparison.Ordinal);
        Assert.Contains("--- guest script ---", text, StringComparison.Ordinal);
        Assert.Contains("{{ssm:/cloudmem/ticket/", text, StringComparison.Ordinal);
        string[] readOnly = ["sts:GetCallerIdentity", "ec2:DescribeInstances", "ec2:DescribeInstanceTypes", "ssm:DescribeInstanceInformation"];
        Assert.All(world.Fake.Operations, o => Assert.Contains(o, readOnly));
        Assert.Empty(Directory.GetFiles(world.OutputDirectory));
        foreach (string secret in world.Secrets())
        {
            Assert.DoesNotContain(secret, text, StringComparison.Ordinal);
        }
    }

    [SkippableFact]
    public async Task Preflight_refuses_an_offline_agent_and_a_stopped_instance()
    {
        string fixture = Fixture.Require("memory.avml");
        using var world = new AwsHarness(fixture);
        world.Fake.PingStatus = "ConnectionLost";
        var error = await Assert.ThrowsAsync<CaptureException>(() => world.Connector().CaptureAsync(CancellationToken.None));
        Assert.Equal("aws i-0123456789abcdef0: preflight 'ssm agent' failed: ConnectionLost, agent 3.3.987.0, Linux Amazon Linux 2023", error.Message);
        Assert.DoesNotContain("ssm:SendCommand", world.Fake.Operations);

        world.Fake.InstanceState = "stopped";
        CapturePlan plan = await world.Connector().PlanAsync(CancellationToken.None);
        Assert.Contains(plan.Checks, c => c is { Name: "instance state", Passed: false, Reason: "stopped (must be running)" });
    }

    [SkippableFact]
    public async Task The_guest_refuses_a_tool_that_changed_after_it_was_hashed()
    {
        string fixture = Fixture.Require("memory.avml");
        using var world = new AwsHarness(fixture);
        world.Fake.BeforeRun = () =>
        {
            string key = world.Clients.S3.ListObjectsV2Async(new Amazon.S3.Model.ListObjectsV2Request { BucketName = AwsHarness.Bucket, Prefix = "cases/tools/" })
                .GetAwaiter().GetResult().S3Objects.Single().Key;
            world.Clients.S3.PutObjectAsync(new Amazon.S3.Model.PutObjectRequest
            {
                BucketName = AwsHarness.Bucket, Key = key, ContentBody = "#!/bin/bash\necho tampered\n", UseChunkEncoding = false,
            }).GetAwaiter().GetResult();
        };
        var error = await Assert.ThrowsAsync<CaptureException>(() => world.Connector().CaptureAsync(CancellationToken.None));
        Assert.Matches(@"^SSM command [0-9a-f-]+ on i-0123456789abcdef0 ended Failed \(exit 3\): acquisition tool SHA-256 is [0-9a-f]{64}, expected [0-9a-f]{64}: not run$", error.Message);
        string manifestPath = Assert.Single(Directory.GetFiles(world.OutputDirectory, "*.custody.json"));
        Assert.Equal(CustodyStatus.Failed, CustodyManifest.Read(manifestPath).Status);
        Assert.Contains(CustodyManifest.Read(manifestPath).Steps, s => s.Action == "abort upload"); // (s3rver answers 405: recorded as FAILED)
        Assert.DoesNotContain("tampered", string.Join("\n", world.Fake.GuestOutputs), StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task A_windows_instance_gets_winpmem_and_a_powershell_script()
    {
        string fixture = Fixture.Require("memory.avml");
        using var world = new AwsHarness(fixture);
        world.Fake.Windows = true;
        CapturePlan plan = await world.Connector(world.Options() with { ToolFile = null }).PlanAsync(CancellationToken.None);
        string text = plan.ToText();
        Assert.Contains("[ok] tool: winpmem for Windows", text, StringComparison.Ordinal);
        Assert.Contains("[FAIL] tool staged: s3://evidence/cases/tools/winpmem.exe is missing: pass --tool-file to stage it", text, StringComparison.Ordinal);
        Assert.Contains("capture (read-only): not planned: a preflight check failed", text, StringComparison.Ordinal);

        CapturePlan staged = await world.Connector(world.Options() with { ToolFile = world.ToolFile }).PlanAsync(CancellationToken.None);
        string script = staged.Attachments.Single().Value;
        Assert.Contains("SendCommand AWS-RunPowerShellScript", staged.ToText(), StringComparison.Ordinal);
        Assert.Contains("$ToolSha256 = '", script, StringComparison.Ordinal);

        var avmlOnWindows = await world.Connector(world.Options() with { Tool = AwsAcquisitionTool.Avml }).PlanAsync(CancellationToken.None);
        Assert.Contains(avmlOnWindows.Checks, c => c is { Name: "tool", Passed: false, Reason: "avml does not run on Windows" });
    }

    /// <summary>No credential, token or presigned signature in the manifest, the logs or any parameter sent to the guest.</summary>
    private static void AssertNoSecrets(AwsHarness world, string manifestPath)
    {
        List<string> secrets = world.Secrets();
        Assert.True(secrets.Count > 3, "the guest received no presigned URL to look for");
        string manifest = File.ReadAllText(manifestPath);
        string log = world.LogText.ToString();
        string parameters = string.Join("\n", world.Fake.SendCommandBodies);
        Assert.NotEmpty(world.Fake.SendCommandBodies);
        Assert.NotEmpty(log);
        foreach (string secret in secrets)
        {
            Assert.DoesNotContain(secret, manifest, StringComparison.Ordinal);
            Assert.DoesNotContain(secret, log, StringComparison.Ordinal);
            Assert.DoesNotContain(secret, parameters, StringComparison.Ordinal);
        }
        foreach (string shape in new[] { "X-Amz-Signature=", "X-Amz-Credential=", "X-Amz-Security-Token=" })
        {
            Assert.DoesNotContain(shape + "A", manifest, StringComparison.Ordinal);
            Assert.DoesNotContain(shape, parameters, StringComparison.Ordinal);
        }
        using var doc = JsonDocument.Parse(manifest);
        Assert.Equal(1, doc.RootElement.GetProperty("schemaVersion").GetInt32());
    }
}
