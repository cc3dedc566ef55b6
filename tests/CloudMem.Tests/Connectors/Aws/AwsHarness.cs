using Amazon.Runtime;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>
/// One AWS world for a test: s3rver (optionally behind a proxy that cuts a part), the EC2/SSM/STS/Auto Scaling fake,
/// fake session credentials, a stand-in acquisition tool (a tiny script writing a real fixture capture to its output
/// argument, as avml does), and a log captured in memory.
/// </summary>
public sealed class AwsHarness : IDisposable
{
    public const string AccessKey = "AKIAFAKE0TEST0KEY123";
    public const string SecretKey = "fakeSecretKey/For+Tests/0123456789abcdefgh";
    public const string SessionToken = "FakeSessionToken//IQoJb3JpZ2luX2VjEFAKEFAKEFAKE0123456789==";
    public const string Bucket = "evidence";

    private readonly TempDir _dir = new();

    public AwsHarness(string fixtureFile, int? cutPart = null, long memTotalBytes = 200_000 * 1024L, AWSCredentials? credentials = null)
    {
        Fixture = fixtureFile;
        S3 = new S3Emulator(Bucket, AccessKey, SecretKey);
        Proxy = cutPart is null ? null : new CuttingProxy(S3.Port, cutPart.Value);
        Fake = new FakeAws();
        ToolFile = _dir.File("avml");
        File.WriteAllText(ToolFile, $"#!/bin/bash\n# stand-in for avml: writes a real capture to the output path\nexec cat '{fixtureFile}' > \"$1\"\n");
        string meminfo = _dir.File("meminfo");
        File.WriteAllText(meminfo, $"MemTotal:       {memTotalBytes / 1024} kB\nMemFree:        1000 kB\n");
        Fake.GuestEnvironment["CLOUDMEM_GUEST_MEMINFO"] = meminfo;
        OutputDirectory = Directory.CreateDirectory(_dir.File("out")).FullName;
        Connection = new AwsConnection
        {
            Region = "us-east-1",
            Credentials = credentials ?? new SessionAWSCredentials(AccessKey, SecretKey, SessionToken),
            Endpoints = new AwsEndpoints
            {
                Ec2 = Fake.Url,
                Ssm = Fake.Url,
                Sts = Fake.Url,
                AutoScaling = Fake.Url,
                Ebs = Fake.Url,
                S3 = Proxy?.Url ?? S3.Url,
            },
        };
        Clients = AwsClients.Create(Connection);
        Scrubber = new SecretScrubber();
        Log = new CaptureLog(Scrubber, LogText);
    }

    public string Fixture { get; }

    public S3Emulator S3 { get; }

    public CuttingProxy? Proxy { get; }

    public FakeAws Fake { get; }

    public string ToolFile { get; }

    public string OutputDirectory { get; }

    public AwsConnection Connection { get; }

    public AwsClients Clients { get; }

    public SecretScrubber Scrubber { get; }

    public StringWriter LogText { get; } = new();

    public CaptureLog Log { get; }

    public AwsCaptureOptions Options(bool download = true) => new()
    {
        InstanceId = Fake.InstanceId,
        Bucket = Bucket,
        Prefix = "cases",
        ToolFile = ToolFile,
        MinPartBytes = 8L << 20,
        Download = download,
    };

    public CaptureRequest Request(TimeSpan? timeout = null) => new()
    {
        CaseId = "IR-42",
        Trigger = CaptureTrigger.Parse("guardduty:7ab2c9f0e1d24b3c"),
        OutputDirectory = OutputDirectory,
        Timeouts = new CaptureTimeouts { Command = timeout ?? TimeSpan.FromMinutes(3), PollInterval = TimeSpan.FromMilliseconds(200), Operation = TimeSpan.FromMinutes(1) },
    };

    public AwsCaptureConnector Connector(AwsCaptureOptions? options = null, CaptureRequest? request = null)
        => new(Clients, options ?? Options(), request ?? Request(), Log, CloudMem.Cli.Commands.CaptureCli.ParserOpener);

    /// <summary>Every secret the run handled: credentials and every presigned signature/credential/token the guest got.</summary>
    public List<string> Secrets()
    {
        var secrets = new List<string> { AccessKey, SecretKey, SessionToken };
        foreach (string url in Fake.GuestUrls)
        {
            var query = System.Web.HttpUtility.ParseQueryString(new Uri(url).Query);
            foreach (string name in new[] { "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "Signature" })
            {
                if (query[name] is { Length: > 0 } value)
                {
                    secrets.Add(value);
                }
            }
            secrets.Add(url);
        }
        return secrets;
    }

    public void Dispose()
    {
        Clients.Dispose();
        Fake.Dispose();
        Proxy?.Dispose();
        S3.Dispose();
        _dir.Dispose();
    }
}
