using Amazon.DynamoDBv2;
using Amazon.DynamoDBv2.Model;
using Amazon.Runtime;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>
/// dynalite 4.0.0 (DynamoDB's wire protocol, in-memory LevelDB; installed by tests/emulators/setup.sh) on a free
/// 127.0.0.1 port, with the responder's table (partition key "key") created through the real SDK.
/// </summary>
public sealed class DynaliteEmulator : IDisposable
{
    public const string Table = "cloudmem-responder";

    private readonly EmulatorProcess _process;

    public DynaliteEmulator()
    {
        string cli = Emulators.Require(Path.Combine("dynalite", "node_modules", "dynalite", "cli.js"));
        Port = Emulators.FreePort();
        _process = new EmulatorProcess("node", [cli, "--host", "127.0.0.1", "--port", Port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--createTableMs", "0"], Port);
        using IAmazonDynamoDB client = Client();
        client.CreateTableAsync(new CreateTableRequest
        {
            TableName = Table,
            BillingMode = BillingMode.PAY_PER_REQUEST,
            AttributeDefinitions = [new AttributeDefinition(DynamoCaptureLedger.KeyAttribute, ScalarAttributeType.S)],
            KeySchema = [new KeySchemaElement(DynamoCaptureLedger.KeyAttribute, KeyType.HASH)],
        }).GetAwaiter().GetResult();
    }

    public int Port { get; }

    public string Url => $"http://127.0.0.1:{Port}";

    public AwsConnection Connection => new()
    {
        Region = "us-east-1",
        Credentials = new BasicAWSCredentials(AwsHarness.AccessKey, AwsHarness.SecretKey),
        Endpoints = new AwsEndpoints { DynamoDb = Url },
    };

    public IAmazonDynamoDB Client() => new AmazonDynamoDBClient(new BasicAWSCredentials(AwsHarness.AccessKey, AwsHarness.SecretKey),
        new AmazonDynamoDBConfig { ServiceURL = Url, AuthenticationRegion = "us-east-1" });

    /// <summary>A ledger with its own client (as each Lambda sandbox has).</summary>
    public DynamoCaptureLedger Ledger(CaptureLog log, TimeProvider? time = null) => DynamoCaptureLedger.Create(Connection, Table, log, time);

    public string Output => _process.Output;

    public void Dispose() => _process.Dispose();
}

/// <summary>A clock the test moves.</summary>
public sealed class ManualClock(DateTimeOffset start) : TimeProvider
{
    public DateTimeOffset Now { get; set; } = start;

    public override DateTimeOffset GetUtcNow() => Now;
}
