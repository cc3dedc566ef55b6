using System.Diagnostics;
using System.Security.Cryptography;
using System.Text;
using CloudMem.Cli;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors;

public sealed class ConnectorsCoreTests
{
    [Fact]
    public void Scrubber_masks_registered_values_and_known_shapes()
    {
        var scrubber = new SecretScrubber();
        scrubber.Register("wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY");
        string presigned = "https://bucket.s3.amazonaws.com/case/part?partNumber=1&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=0123abcd&X-Amz-Security-Token=FQoGZXIvYXdzEJr";
        string text = $"secret wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY key AKIAIOSFODNN7EXAMPLE url {presigned} sas https://a.blob.core.windows.net/c/b?sv=2024&sig=abc%2Bdef password=Hunter2 \"SessionToken\": \"tok123456\" Authorization: AWS4-HMAC-SHA256 Credential=x";
        string scrubbed = scrubber.Scrub(text);
        foreach (string secret in new[] { "wJalrXUtnFEMI", "AKIAIOSFODNN7EXAMPLE", "0123abcd", "FQoGZXIvYXdzEJr", "abc%2Bdef", "Hunter2", "tok123456", "Credential=x" })
        {
            Assert.DoesNotContain(secret, scrubbed, StringComparison.Ordinal);
        }
        Assert.Contains("partNumber=1", scrubbed, StringComparison.Ordinal);
        Assert.True(scrubber.ContainsSecret(text));
        Assert.False(scrubber.ContainsSecret(scrubbed));
        Assert.Equal("https://bucket.s3.amazonaws.com/case/part", SecretScrubber.WithoutQuery(presigned));
    }

    [Fact]
    public void Scrubber_ignores_short_values_and_keeps_ordinary_text()
    {
        var scrubber = new SecretScrubber();
        scrubber.Register("abc");
        Assert.Equal("abc memory.lime sha256 00ff", scrubber.Scrub("abc memory.lime sha256 00ff"));
    }

    [Fact]
    public async Task Hashing_stream_and_sink_agree_with_sha256()
    {
        byte[] data = new byte[3_000_001];
        new Random(7).NextBytes(data);
        string expected = Convert.ToHexStringLower(SHA256.HashData(data));

        await using var hashing = new HashingStream(new MemoryStream(data));
        await using var copy = new MemoryStream();
        await Sha256Sink.CopyAsync(hashing, copy);
        Assert.Equal(expected, hashing.Sha256Hex);
        Assert.Equal(data.Length, hashing.BytesHashed);
        Assert.Equal(data, copy.ToArray());

        (string sha, long length) = await Sha256Sink.HashAsync(new MemoryStream(data));
        Assert.Equal(expected, sha);
        Assert.Equal(data.Length, length);
    }

    [Fact]
    public async Task Poll_returns_the_value_once_done()
    {
        int calls = 0;
        string value = await Resilience.PollUntilAsync("job", _ => ValueTask.FromResult(++calls < 3 ? PollState<string>.Pending("Running") : PollState<string>.Finished("Success", "ok")),
            TimeSpan.FromMilliseconds(10), TimeSpan.FromSeconds(10));
        Assert.Equal("ok", value);
        Assert.Equal(3, calls);
    }

    [Fact]
    public async Task Poll_times_out_with_the_last_state()
    {
        var clock = Stopwatch.StartNew();
        var error = await Assert.ThrowsAsync<CaptureTimeoutException>(() => Resilience.PollUntilAsync("SSM command c-1", _ => ValueTask.FromResult(PollState<int>.Pending("InProgress")),
            TimeSpan.FromMilliseconds(20), TimeSpan.FromMilliseconds(300)));
        Assert.Equal("SSM command c-1 did not finish within 300 ms (last state: InProgress)", error.Message);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5));
        Assert.Equal("error: SSM command c-1 did not finish within 300 ms (last state: InProgress)", CliApp.Describe(error));
    }

    [Theory]
    [InlineData(null, "manual")]
    [InlineData("manual", "manual")]
    [InlineData("guardduty:abc123", "guardduty:abc123")]
    [InlineData("defender:2517-x", "defender:2517-x")]
    public void Trigger_parses(string? text, string expected) => Assert.Equal(expected, CaptureTrigger.Parse(text).ToString());

    [Theory]
    [InlineData("guardduty:")]
    [InlineData("splunk:1")]
    [InlineData("guardduty")]
    public void Trigger_rejects_other_forms(string text) => Assert.Throws<CaptureException>(() => CaptureTrigger.Parse(text));

    [Fact]
    public void Manifest_is_completed_only_with_verified_opened_evidence()
    {
        using var dir = new TempDir();
        var log = new StringWriter();
        var scrubber = new SecretScrubber();
        scrubber.Register("SECRETSECRET");
        var request = new CaptureRequest { CaseId = "case-1", Trigger = CaptureTrigger.Parse("guardduty:f1"), OutputDirectory = dir.Path };
        var recorder = new CustodyRecorder("aws", "i-0123", "ssm-avml", request, new CaptureLog(scrubber, log));
        recorder.Step("send command", "token SECRETSECRET");
        recorder.RequestId("ssm", "SendCommand", "req-1");
        recorder.Evidence("memory.lime", "s3://b/k?X-Amz-Signature=abc", null, 10, 10, "AA", "aa", "lime", null);
        recorder.Complete();
        string path = recorder.Write();
        CustodyManifest manifest = CustodyManifest.Read(path);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        Assert.Equal("s3://b/k", manifest.Evidence[0].Uri);
        Assert.Equal("aa", manifest.Evidence[0].Sha256);
        string json = File.ReadAllText(path);
        Assert.Contains("\"status\": \"Completed\"", json, StringComparison.Ordinal);
        Assert.Contains("\"caseId\": \"case-1\"", json, StringComparison.Ordinal);
        Assert.DoesNotContain("SECRETSECRET", json, StringComparison.Ordinal);
        Assert.DoesNotContain("SECRETSECRET", log.ToString(), StringComparison.Ordinal);
        Assert.Single(Directory.GetFiles(dir.Path)); // no temporary file left

        var failing = new CustodyRecorder("aws", "i-0123", "ssm-avml", request, new CaptureLog(scrubber));
        failing.Evidence("memory.lime", "s3://b/k", null, 10, 10, "aa", "bb", "lime", null);
        Assert.Throws<CaptureException>(failing.Complete);
        Assert.Equal(CustodyStatus.Failed, failing.Build().Status);
        Assert.Contains("differs", failing.Build().Error, StringComparison.Ordinal);

        var unopened = new CustodyRecorder("aws", "i-0123", "ssm-avml", request, new CaptureLog(scrubber));
        unopened.Evidence("memory.lime", "s3://b/k", null, 10, 10, "aa", "aa", null, "no format");
        Assert.Throws<CaptureException>(unopened.Complete);
    }

    [Fact]
    public void Plan_renders_checks_and_steps()
    {
        var plan = new CapturePlan("aws", "i-1", "ssm-avml");
        plan.Check("instance state", true, "running");
        plan.Check("ssm agent", false, "ConnectionLost");
        plan.Step("describe", "DescribeInstances", mutating: false);
        plan.Step("send command", "AWS-RunShellScript");
        string text = plan.ToText();
        Assert.Contains("[FAIL] ssm agent: ConnectionLost", text, StringComparison.Ordinal);
        Assert.Contains("NOT READY", text, StringComparison.Ordinal);
        Assert.Contains(" 2. send command: AWS-RunShellScript", text, StringComparison.Ordinal);
        var error = Assert.Throws<CaptureException>(plan.ThrowIfNotReady);
        Assert.Equal("aws i-1: preflight 'ssm agent' failed: ConnectionLost", error.Message);
    }
}
