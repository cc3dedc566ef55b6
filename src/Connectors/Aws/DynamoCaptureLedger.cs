using System.Globalization;
using Amazon.DynamoDBv2;
using Amazon.DynamoDBv2.Model;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;

namespace CloudMem.Connectors.Aws;

/// <summary>
/// <see cref="ICaptureLedger"/> on a DynamoDB table (partition key <c>key</c>, a string; TTL attribute
/// <c>expiresAt</c>, epoch seconds). Two kinds of item, each taken by a conditional PutItem
/// (<c>attribute_not_exists(key) OR expiresAt &lt; now</c>, so an item past its TTL that DynamoDB has not yet deleted
/// counts as absent):
/// <list type="bullet">
/// <item><c>alert#SOURCE:ID#TARGET</c>: the alert on this machine (finding id + instance); kept for
/// <see cref="AlertRetention"/> with its state (Claimed, Captured, Failed, Skipped), owner, manifest and reason, so a
/// re-delivery is answered from it and the tool never runs twice for one alert.</item>
/// <item><c>lock#TARGET</c>: the machine's lock, held by one claim until it is released (conditional on the owner)
/// or until it expires (its holder died).</item>
/// </list>
/// </summary>
/// <remarks>Thread-safe. Owns the client. Every call is recorded in the log; service errors become <see cref="CaptureException"/>.</remarks>
public sealed class DynamoCaptureLedger : ICaptureLedger, IDisposable
{
    /// <summary>The partition key attribute.</summary>
    public const string KeyAttribute = "key";

    /// <summary>The TTL attribute (epoch seconds; enable TTL on it in the table).</summary>
    public const string ExpiresAttribute = "expiresAt";

    private const string ConditionFailed = "ConditionalCheckFailedException";
    private const string Claimable = "attribute_not_exists(#key) OR #expires < :now";
    private readonly IAmazonDynamoDB _client;
    private readonly AwsCalls _calls = new(null);
    private readonly CaptureLog _log;
    private readonly TimeProvider _time;

    /// <summary>Creates the ledger on <paramref name="table"/> with <paramref name="client"/> (owned).</summary>
    public DynamoCaptureLedger(IAmazonDynamoDB client, string table, CaptureLog log, TimeProvider? time = null)
    {
        if (string.IsNullOrWhiteSpace(table) || table.Length > 255)
        {
            throw new CaptureException($"DynamoDB table name '{table}' must be 1-255 characters");
        }
        _client = client;
        Table = table;
        _log = log;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>Builds the client for <paramref name="connection"/> (endpoint <see cref="AwsEndpoints.DynamoDb"/>).</summary>
    public static DynamoCaptureLedger Create(AwsConnection connection, string table, CaptureLog log, TimeProvider? time = null)
    {
        var config = AwsClients.ConfigureClient(new AmazonDynamoDBConfig(), connection, connection.Endpoints.DynamoDb);
        return new DynamoCaptureLedger(new AmazonDynamoDBClient(AwsClients.CredentialsFor(connection, config), config), table, log, time);
    }

    /// <summary>The table.</summary>
    public string Table { get; }

    /// <summary>How long an alert's item keeps re-deliveries out (GuardDuty updates a finding for days). Default 30 days.</summary>
    public TimeSpan AlertRetention { get; init; } = TimeSpan.FromDays(30);

    /// <summary>The client (for callers that keep more state in the same items).</summary>
    public IAmazonDynamoDB Client => _client;

    /// <summary>The alert item's key: source, alert id and target.</summary>
    public static string AlertKey(AlertEvent alert)
        => $"alert#{(alert.Source == AlertSource.GuardDuty ? "guardduty" : "defender")}:{alert.Id}#{alert.Target}";

    /// <summary>The machine lock's key.</summary>
    public static string LockKey(string target) => $"lock#{target}";

    /// <inheritdoc />
    public Task<LedgerClaim> ClaimAsync(AlertEvent alert, TimeSpan lockFor, CancellationToken cancellationToken)
        => ClaimAsync(alert, lockFor, null, cancellationToken);

    /// <summary>
    /// Like <see cref="ClaimAsync(AlertEvent, TimeSpan, CancellationToken)"/> with a stable owner (a workflow's execution
    /// id): a claim this owner already holds is won again (<see cref="LedgerClaim.Resumed"/>), so a restarted step goes on
    /// where its execution was, while any other owner still loses.
    /// </summary>
    public async Task<LedgerClaim> ClaimAsync(AlertEvent alert, TimeSpan lockFor, string? owner, CancellationToken cancellationToken)
    {
        if (alert.Target is null)
        {
            throw new CaptureException($"{alert.Trigger}: the alert names no machine to claim");
        }
        string alertKey = AlertKey(alert);
        string lockKey = LockKey(alert.Target);
        bool stable = owner is not null;
        owner ??= Guid.NewGuid().ToString("N");
        DateTimeOffset now = _time.GetUtcNow();
        var item = new Dictionary<string, AttributeValue>
        {
            [KeyAttribute] = S(alertKey),
            ["state"] = S("Claimed"),
            ["owner"] = S(owner),
            ["trigger"] = S(alert.Trigger.ToString()),
            ["target"] = S(alert.Target),
            ["claimedAt"] = S(Iso(now)),
            [ExpiresAttribute] = N(now + AlertRetention),
        };
        bool resumed = false;
        if (!await PutIfClaimableAsync(item, now, null, cancellationToken).ConfigureAwait(false))
        {
            Dictionary<string, AttributeValue> held = await GetAsync(alertKey, cancellationToken).ConfigureAwait(false);
            resumed = stable && Text(held, "owner") == owner && Text(held, "state") == "Claimed";
            if (!resumed)
            {
                string reason = $"duplicate delivery: {alert.Trigger} on {alert.Target} was claimed at {Text(held, "claimedAt")} (state {Text(held, "state")}); the tool is not run again";
                _log.Info(reason);
                return new LedgerClaim(LedgerRefusal.Duplicate, reason, alertKey, lockKey, owner);
            }
        }
        var lockItem = new Dictionary<string, AttributeValue>
        {
            [KeyAttribute] = S(lockKey),
            ["owner"] = S(owner),
            ["trigger"] = S(alert.Trigger.ToString()),
            ["claimedAt"] = S(Iso(now)),
            [ExpiresAttribute] = N(now + lockFor),
        };
        if (!await PutIfClaimableAsync(lockItem, now, owner, cancellationToken).ConfigureAwait(false))
        {
            Dictionary<string, AttributeValue> held = await GetAsync(lockKey, cancellationToken).ConfigureAwait(false);
            string reason = $"{alert.Target} is being captured for {Text(held, "trigger")} (locked since {Text(held, "claimedAt")}); {alert.Trigger} is not captured again";
            await UpdateAlertAsync(alertKey, owner, new LedgerOutcome("Skipped", reason, null), cancellationToken).ConfigureAwait(false);
            _log.Info(reason);
            return new LedgerClaim(LedgerRefusal.MachineLocked, reason, alertKey, lockKey, owner);
        }
        _log.Info($"{(resumed ? "resumed" : "claimed")} {alert.Trigger} on {alert.Target} in {Table} (lock until {Iso(now + lockFor)})");
        return new LedgerClaim(LedgerRefusal.None, resumed ? "resumed" : "claimed", alertKey, lockKey, owner) { Resumed = resumed };
    }

    /// <inheritdoc />
    public async Task ReleaseAsync(LedgerClaim claim, LedgerOutcome outcome, CancellationToken cancellationToken)
    {
        if (!claim.Won)
        {
            throw new InvalidOperationException("only a won claim is released");
        }
        await UpdateAlertAsync(claim.AlertKey, claim.Owner, outcome, cancellationToken).ConfigureAwait(false);
        DeleteItemResponse? deleted = await _calls.TryRun("dynamodb", "DeleteItem", ct => _client.DeleteItemAsync(new DeleteItemRequest
        {
            TableName = Table,
            Key = new() { [KeyAttribute] = S(claim.LockKey) },
            ConditionExpression = "#owner = :owner",
            ExpressionAttributeNames = new() { ["#owner"] = "owner" },
            ExpressionAttributeValues = new() { [":owner"] = S(claim.Owner) },
        }, ct), cancellationToken, ConditionFailed).ConfigureAwait(false);
        _log.Info(deleted is null
            ? $"lock {claim.LockKey} was no longer ours (it expired and was taken); left alone"
            : $"released {claim.LockKey}: {outcome.State}");
    }

    /// <summary>Reads an item (strongly consistent); empty when absent.</summary>
    public async Task<Dictionary<string, AttributeValue>> GetAsync(string key, CancellationToken cancellationToken)
    {
        GetItemResponse response = await _calls.Run("dynamodb", "GetItem", ct => _client.GetItemAsync(new GetItemRequest
        {
            TableName = Table,
            Key = new() { [KeyAttribute] = S(key) },
            ConsistentRead = true,
        }, ct), cancellationToken).ConfigureAwait(false);
        return response.Item ?? [];
    }

    // Taken when absent or expired; with an owner, also when that owner holds it (the lock of a resumed claim).
    private async Task<bool> PutIfClaimableAsync(Dictionary<string, AttributeValue> item, DateTimeOffset now, string? owner, CancellationToken cancellationToken)
    {
        var names = new Dictionary<string, string> { ["#key"] = KeyAttribute, ["#expires"] = ExpiresAttribute };
        var values = new Dictionary<string, AttributeValue> { [":now"] = N(now) };
        string condition = Claimable;
        if (owner is not null)
        {
            names["#owner"] = "owner";
            values[":owner"] = S(owner);
            condition += " OR #owner = :owner";
        }
        PutItemResponse? put = await _calls.TryRun("dynamodb", "PutItem", ct => _client.PutItemAsync(new PutItemRequest
        {
            TableName = Table,
            Item = item,
            ConditionExpression = condition,
            ExpressionAttributeNames = names,
            ExpressionAttributeValues = values,
        }, ct), cancellationToken, ConditionFailed).ConfigureAwait(false);
        return put is not null;
    }

    /// <summary>Stores string attributes (a workflow's state) in the claimed alert's item, only while the claim is ours.</summary>
    public async Task SaveAsync(LedgerClaim claim, IReadOnlyDictionary<string, string> attributes, CancellationToken cancellationToken)
    {
        var names = new Dictionary<string, string> { ["#owner"] = "owner" };
        var values = new Dictionary<string, AttributeValue> { [":owner"] = S(claim.Owner) };
        var sets = new List<string>();
        int i = 0;
        foreach ((string name, string value) in attributes)
        {
            names[$"#a{i}"] = name;
            values[$":v{i}"] = S(value);
            sets.Add($"#a{i} = :v{i}");
            i++;
        }
        await _calls.Run("dynamodb", "UpdateItem", ct => _client.UpdateItemAsync(new UpdateItemRequest
        {
            TableName = Table,
            Key = new() { [KeyAttribute] = S(claim.AlertKey) },
            UpdateExpression = "SET " + string.Join(", ", sets),
            ConditionExpression = "#owner = :owner",
            ExpressionAttributeNames = names,
            ExpressionAttributeValues = values,
        }, ct), cancellationToken).ConfigureAwait(false);
    }

    private async Task UpdateAlertAsync(string alertKey, string owner, LedgerOutcome outcome, CancellationToken cancellationToken)
    {
        var names = new Dictionary<string, string> { ["#state"] = "state", ["#reason"] = "reason", ["#finished"] = "finishedAt", ["#owner"] = "owner" };
        var values = new Dictionary<string, AttributeValue>
        {
            [":state"] = S(outcome.State),
            [":reason"] = S(outcome.Reason.Length > 2000 ? outcome.Reason[..2000] : outcome.Reason),
            [":finished"] = S(Iso(_time.GetUtcNow())),
            [":owner"] = S(owner),
        };
        string update = "SET #state = :state, #reason = :reason, #finished = :finished";
        if (outcome.Manifest is not null)
        {
            names["#manifest"] = "manifest";
            values[":manifest"] = S(outcome.Manifest);
            update += ", #manifest = :manifest";
        }
        await _calls.Run("dynamodb", "UpdateItem", ct => _client.UpdateItemAsync(new UpdateItemRequest
        {
            TableName = Table,
            Key = new() { [KeyAttribute] = S(alertKey) },
            UpdateExpression = update,
            ConditionExpression = "#owner = :owner",
            ExpressionAttributeNames = names,
            ExpressionAttributeValues = values,
        }, ct), cancellationToken).ConfigureAwait(false);
    }

    private static string Text(Dictionary<string, AttributeValue> item, string name)
        => item.TryGetValue(name, out AttributeValue? value) && value.S is { } text ? text : "?";

    internal static AttributeValue S(string value) => new() { S = value };

    internal static AttributeValue N(DateTimeOffset at) => new() { N = at.ToUnixTimeSeconds().ToString(CultureInfo.InvariantCulture) };

    internal static string Iso(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);

    /// <inheritdoc />
    public void Dispose() => _client.Dispose();
}
