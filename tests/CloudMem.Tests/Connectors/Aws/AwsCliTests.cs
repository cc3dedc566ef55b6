using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>The CLI as a child process: credentials from the SDK default chain (environment), endpoints from AWS_ENDPOINT_URL_*.</summary>
public sealed class AwsCliTests
{
    internal static Dictionary<string, string> Environment(AwsHarness world) => new()
    {
        ["AWS_ACCESS_KEY_ID"] = AwsHarness.AccessKey,
        ["AWS_SECRET_ACCESS_KEY"] = AwsHarness.SecretKey,
        ["AWS_SESSION_TOKEN"] = AwsHarness.SessionToken,
        ["AWS_REGION"] = "us-east-1",
        ["AWS_CONFIG_FILE"] = "/nonexistent",
        ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent",
        ["AWS_EC2_METADATA_DISABLED"] = "true",
        ["AWS_ENDPOINT_URL_EC2"] = world.Fake.Url,
        ["AWS_ENDPOINT_URL_SSM"] = world.Fake.Url,
        ["AWS_ENDPOINT_URL_STS"] = world.Fake.Url,
        ["AWS_ENDPOINT_URL_AUTO_SCALING"] = world.Fake.Url,
        ["AWS_ENDPOINT_URL_S3"] = world.S3.Url,
    };

    [SkippableFact]
    public void Capture_through_the_cli_completes_and_logs_no_secret()
    {
        string fixture = Fixture.Require("memory.avml");
        using var world = new AwsHarness(fixture);
        string logFile = Path.Combine(world.OutputDirectory, "..", "capture.log");
        (int exit, string stdout, string stderr) = CliRunner.Run(Environment(world), null,
            "capture", "aws", world.Fake.InstanceId, "--bucket", AwsHarness.Bucket, "--prefix", "cases", "--case-id", "IR-9",
            "--trigger", "guardduty:abc", "--tool-file", world.ToolFile, "--min-part-mib", "8", "--download",
            "--out", world.OutputDirectory, "--poll", "0.2", "--log", logFile);
        Assert.True(exit == 0, stderr);
        Assert.Contains("status: Completed", stdout, StringComparison.Ordinal);
        string manifestPath = Assert.Single(Directory.GetFiles(world.OutputDirectory, "*.custody.json"));
        CustodyManifest manifest = CustodyManifest.Read(manifestPath);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        Assert.Equal("IR-9", manifest.CaseId);
        Assert.NotNull(Assert.Single(manifest.Evidence).LocalPath);

        string everything = stdout + stderr + File.ReadAllText(logFile) + File.ReadAllText(manifestPath) + string.Join("\n", world.Fake.SendCommandBodies);
        Assert.Contains("send command", everything, StringComparison.Ordinal);
        foreach (string secret in world.Secrets())
        {
            Assert.DoesNotContain(secret, everything, StringComparison.Ordinal);
        }
    }

    [SkippableFact]
    public void Plan_through_the_cli_prints_checks_steps_and_script()
    {
        string fixture = Fixture.Require("memory.avml");
        using var world = new AwsHarness(fixture);
        (int exit, string stdout, string stderr) = CliRunner.Run(Environment(world), null,
            "capture", "aws", world.Fake.InstanceId, "--bucket", AwsHarness.Bucket, "--prefix", "cases", "--tool-file", world.ToolFile, "--plan");
        Assert.True(exit == 0, stderr);
        Assert.Contains("Plan: aws ssm i-0123456789abcdef0", stdout, StringComparison.Ordinal);
        Assert.Contains("[ok] evidence bucket", stdout, StringComparison.Ordinal);
        Assert.Contains("#!/bin/bash", stdout, StringComparison.Ordinal);
        Assert.All(world.Fake.Operations, o => Assert.True(o.Contains(":Describe", StringComparison.Ordinal) || o == "sts:GetCallerIdentity", o));

        world.Fake.RegisteredWithSsm = false;
        (exit, _, stderr) = CliRunner.Run(Environment(world), null,
            "capture", "aws", world.Fake.InstanceId, "--bucket", AwsHarness.Bucket, "--tool-file", world.ToolFile, "--plan");
        Assert.Equal(2, exit);
        Assert.StartsWith("cloudmem: error: aws i-0123456789abcdef0: preflight 'ssm agent' failed: the instance is not registered with Systems Manager", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public void Bad_arguments_are_usage_errors()
    {
        (int exit, _, string stderr) = CliRunner.Run(null, null, "capture", "aws", "web-1", "--bucket", "evidence");
        Assert.Equal(2, exit);
        Assert.Contains("not an EC2 instance id", stderr, StringComparison.Ordinal);
        (exit, _, stderr) = CliRunner.Run(null, null, "isolate", "aws", "i-0abc", "--isolation-sg", "sg-1");
        Assert.Equal(2, exit);
        Assert.Contains("--transition-sg are required", stderr, StringComparison.Ordinal);
        (exit, _, stderr) = CliRunner.Run(null, null, "capture", "aws", "i-0abc", "--bucket", "evidence", "--trigger", "splunk:1");
        Assert.Equal(2, exit);
        Assert.Contains("trigger 'splunk:1'", stderr, StringComparison.Ordinal);
    }
}
