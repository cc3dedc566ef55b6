using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Azure;
using Azure.Data.Tables;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;

namespace CloudMem.Connectors.Azure;

/// <summary>
/// <see cref="ICaptureLedger"/> on an Azure Storage table, the Azure twin of <c>DynamoCaptureLedger</c>: every
/// decision is an ETag-conditional write (insert fails with 409 when the entity exists; replace with the ETag read
/// fails with 412 when someone wrote in between), so concurrent deliveries in different processes agree.
/// Partition <c>alert</c>: one entity per alert on a machine (row key = SHA-256 of <c>defender:ID#TARGET</c>, since
/// row keys may not hold '/' or '#'), with state Claimed/Captured/Failed/Skipped, owner, reason, manifest and the
/// workflow's saved state. Partition <c>lock</c>: the machine's lock (row key = SHA-256 of the target), taken when
/// absent or expired, released only by its owner.
/// </summary>
/// <remarks>Thread-safe. Service errors become <see cref="CaptureException"/> naming the table and the operation.</remarks>
public sealed class TableCaptureLedger : ICaptureLedger
{
    private const string AlertPartition = "alert";
    private const string LockPartition = "lock";
    private const string StartPartition = "start";

    /// <summary>A table property holds at most 64 KiB (32 K UTF-16 characters): longer saved values are split.</summary>
    private const int ChunkChars = 30_000;

    /// <summary>At most this many chunks per saved value (an entity holds at most 1 MiB).</summary>
    private const int MaxChunks = 24;

    private readonly TableClient _table;
    private readonly CaptureLog _log;
    private readonly TimeProvider _time;

    /// <summary>Creates the ledger on <paramref name="table"/> (created when absent by <see cref="CreateIfNotExistsAsync"/>).</summary>
    public TableCaptureLedger(TableClient table, CaptureLog log, TimeProvider? time = null)
    {
        _table = table;
        _log = log;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>The ledger on table <paramref name="tableName"/> of the storage account in <paramref name="connectionString"/>.</summary>
    public static TableCaptureLedger Create(string connectionString, string tableName, CaptureLog log)
    {
        log.Scrubber.Register(connectionString);
        return new TableCaptureLedger(new TableServiceClient(connectionString).GetTableClient(tableName), log);
    }

    /// <summary>The table's name.</summary>
    public string Table => _table.Name;

    /// <summary>How long an alert's entity keeps re-deliveries out. Default 30 days.</summary>
    public TimeSpan AlertRetention { get; init; } = TimeSpan.FromDays(30);

    /// <summary>Creates the table when it does not exist.</summary>
    public async Task CreateIfNotExistsAsync(CancellationToken cancellationToken)
        => await Call("CreateTableIfNotExists", () => _table.CreateIfNotExistsAsync(cancellationToken)).ConfigureAwait(false);

    /// <summary>The alert's key text: source, alert id and target.</summary>
    public static string AlertKey(AlertEvent alert)
        => $"{(alert.Source == AlertSource.GuardDuty ? "guardduty" : "defender")}:{alert.Id}#{alert.Target}";

    /// <summary>The row key of a key text (SHA-256, hex).</summary>
    public static string RowKey(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));

    /// <inheritdoc />
    public Task<LedgerClaim> ClaimAsync(AlertEvent alert, TimeSpan lockFor, CancellationToken cancellationToken)
        => ClaimAsync(alert, lockFor, null, cancellationToken);

    /// <summary>
    /// Like <see cref="ClaimAsync(AlertEvent, TimeSpan, CancellationToken)"/> with a stable owner (the durable
    /// orchestration's instance id): a claim this owner already holds is won again (<see cref="LedgerClaim.Resumed"/>).
    /// </summary>
    public async Task<LedgerClaim> ClaimAsync(AlertEvent alert, TimeSpan lockFor, string? owner, CancellationToken cancellationToken)
    {
        if (alert.Target is null)
        {
            throw new CaptureException($"{alert.Trigger}: the alert names no machine to claim");
        }
        string alertKey = AlertKey(alert);
        string lockKey = alert.Target;
        bool stable = owner is not null;
        owner ??= Guid.NewGuid().ToString("N");
        DateTimeOffset now = _time.GetUtcNow();
        var entity = new TableEntity(AlertPartition, RowKey(alertKey))
        {
            ["key"] = alertKey,
            ["state"] = "Claimed",
            ["owner"] = owner,
            ["trigger"] = alert.Trigger.ToString(),
            ["target"] = alert.Target,
            ["claimedAt"] = Iso(now),
            ["expiresAt"] = now + AlertRetention,
        };
        bool resumed = false;
        if (!await TakeAsync(entity, now, null, cancellationToken).ConfigureAwait(false))
        {
            TableEntity? held = await FindAsync(AlertPartition, RowKey(alertKey), cancellationToken).ConfigureAwait(false);
            resumed = stable && Text(held, "owner") == owner && Text(held, "state") == "Claimed";
            if (!resumed)
            {
                string reason = $"duplicate delivery: {alert.Trigger} on {alert.Target} was claimed at {Text(held, "claimedAt")} (state {Text(held, "state")}); the tool is not run again";
                _log.Info(reason);
                return new LedgerClaim(LedgerRefusal.Duplicate, reason, alertKey, lockKey, owner);
            }
        }
        var lockEntity = new TableEntity(LockPartition, RowKey(lockKey))
        {
            ["key"] = lockKey,
            ["owner"] = owner,
            ["trigger"] = alert.Trigger.ToString(),
            ["claimedAt"] = Iso(now),
            ["expiresAt"] = now + lockFor,
        };
        if (!await TakeAsync(lockEntity, now, owner, cancellationToken).ConfigureAwait(false))
        {
            TableEntity? held = await FindAsync(LockPartition, RowKey(lockKey), cancellationToken).ConfigureAwait(false);
            string reason = $"{alert.Target} is being captured for {Text(held, "trigger")} (locked since {Text(held, "claimedAt")}); {alert.Trigger} is not captured again";
            await UpdateAlertAsync(alertKey, owner, new Dictionary<string, string> { ["state"] = "Skipped", ["reason"] = reason }, cancellationToken).ConfigureAwait(false);
            _log.Info(reason);
            return new LedgerClaim(LedgerRefusal.MachineLocked, reason, alertKey, lockKey, owner);
        }
        _log.Info($"{(resumed ? "resumed" : "claimed")} {alert.Trigger} on {alert.Target} in table {Table} (lock until {Iso(now + lockFor)})");
        return new LedgerClaim(LedgerRefusal.None, resumed ? "resumed" : "claimed", alertKey, lockKey, owner) { Resumed = resumed };
    }

    /// <inheritdoc />
    public async Task ReleaseAsync(LedgerClaim claim, LedgerOutcome outcome, CancellationToken cancellationToken)
    {
        if (!claim.Won)
        {
            throw new InvalidOperationException("only a won claim is released");
        }
        var values = new Dictionary<string, string>
        {
            ["state"] = outcome.State,
            ["reason"] = outcome.Reason.Length > 2000 ? outcome.Reason[..2000] : outcome.Reason,
            ["finishedAt"] = Iso(_time.GetUtcNow()),
        };
        if (outcome.Manifest is not null)
        {
            values["manifest"] = outcome.Manifest;
        }
        await UpdateAlertAsync(claim.AlertKey, claim.Owner, values, cancellationToken).ConfigureAwait(false);
        TableEntity? held = await FindAsync(LockPartition, RowKey(claim.LockKey), cancellationToken).ConfigureAwait(false);
        bool ours = held is not null && Text(held, "owner") == claim.Owner;
        if (ours)
        {
            try
            {
                await Call("DeleteEntity", () => _table.DeleteEntityAsync(LockPartition, RowKey(claim.LockKey), held!.ETag, cancellationToken)).ConfigureAwait(false);
            }
            catch (CaptureException e) when (e.InnerException is RequestFailedException { Status: 404 or 412 })
            {
                ours = false;
            }
        }
        _log.Info(ours ? $"released the lock on {claim.LockKey}: {outcome.State}" : $"the lock on {claim.LockKey} was no longer ours (it expired and was taken); left alone");
    }

    /// <summary>
    /// Takes a start marker for <paramref name="name"/> (an orchestration instance id) by an ETag-conditional insert:
    /// true for exactly one of concurrent callers; false while another caller's marker is younger than
    /// <paramref name="hold"/> (after that, a starter that died before creating the orchestration is taken over).
    /// </summary>
    public async Task<bool> TryMarkStartAsync(string name, TimeSpan hold, CancellationToken cancellationToken)
    {
        DateTimeOffset now = _time.GetUtcNow();
        var marker = new TableEntity(StartPartition, RowKey(name))
        {
            ["key"] = name,
            ["claimedAt"] = Iso(now),
            ["expiresAt"] = now + hold,
        };
        return await TakeAsync(marker, now, null, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// The saved string values of the claimed alert (state, workflow values written by <see cref="SaveAsync"/>, chunks
    /// joined); empty when the alert has no entity.
    /// </summary>
    public async Task<Dictionary<string, string>> GetAsync(string alertKey, CancellationToken cancellationToken)
    {
        TableEntity? entity = await FindAsync(AlertPartition, RowKey(alertKey), cancellationToken).ConfigureAwait(false);
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        if (entity is null)
        {
            return values;
        }
        foreach ((string name, object value) in entity)
        {
            if (value is string text && !name.Contains("__", StringComparison.Ordinal) && name is not ("PartitionKey" or "RowKey"))
            {
                values[name] = text;
            }
            else if (name.EndsWith("__chunks", StringComparison.Ordinal) && value is int chunks && chunks is > 0 and <= MaxChunks)
            {
                string field = name[..^"__chunks".Length];
                var joined = new StringBuilder();
                for (int i = 0; i < chunks; i++)
                {
                    joined.Append(entity.GetString($"{field}__{i}") ?? throw new CaptureException($"table {Table}: {field} chunk {i} of {chunks} is missing in the entity of {alertKey}"));
                }
                values[field] = joined.ToString();
            }
        }
        return values;
    }

    /// <summary>Stores string values (a workflow's state) in the claimed alert's entity, only while the claim is ours (ETag-conditional).</summary>
    public Task SaveAsync(LedgerClaim claim, IReadOnlyDictionary<string, string> values, CancellationToken cancellationToken)
        => UpdateAlertAsync(claim.AlertKey, claim.Owner, values, cancellationToken);

    private async Task UpdateAlertAsync(string alertKey, string owner, IReadOnlyDictionary<string, string> values, CancellationToken cancellationToken)
    {
        TableEntity entity = await FindAsync(AlertPartition, RowKey(alertKey), cancellationToken).ConfigureAwait(false)
            ?? throw new CaptureException($"table {Table}: the entity of {alertKey} is gone");
        if (Text(entity, "owner") != owner)
        {
            throw new CaptureException($"table {Table}: {alertKey} is held by another owner ({Text(entity, "owner")}); not written");
        }
        foreach ((string name, string value) in values)
        {
            foreach (string stale in entity.Keys.Where(k => k.StartsWith(name + "__", StringComparison.Ordinal)).ToArray())
            {
                entity.Remove(stale);
            }
            if (value.Length <= ChunkChars)
            {
                entity[name] = value;
                continue;
            }
            int chunks = (value.Length + ChunkChars - 1) / ChunkChars;
            if (chunks > MaxChunks)
            {
                throw new CaptureException($"table {Table}: {name} of {alertKey} is {value.Length} characters, more than an entity holds ({MaxChunks * ChunkChars})");
            }
            entity.Remove(name);
            entity[$"{name}__chunks"] = chunks;
            for (int i = 0; i < chunks; i++)
            {
                entity[$"{name}__{i}"] = value.Substring(i * ChunkChars, Math.Min(ChunkChars, value.Length - (i * ChunkChars)));
            }
        }
        // Replace with the ETag read: a concurrent writer makes this fail (412) instead of being overwritten.
        await Call("UpdateEntity", () => _table.UpdateEntityAsync(entity, entity.ETag, TableUpdateMode.Replace, cancellationToken)).ConfigureAwait(false);
    }

    // Inserted when absent; replaced (ETag-conditional) when expired or, with an owner, held by that owner.
    private async Task<bool> TakeAsync(TableEntity entity, DateTimeOffset now, string? owner, CancellationToken cancellationToken)
    {
        try
        {
            await _table.AddEntityAsync(entity, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (RequestFailedException e) when (e.Status == 409)
        {
        }
        catch (RequestFailedException e)
        {
            throw Failure("AddEntity", e);
        }
        TableEntity? held = await FindAsync(entity.PartitionKey, entity.RowKey, cancellationToken).ConfigureAwait(false);
        if (held is null)
        {
            return false;
        }
        bool expired = held.GetDateTimeOffset("expiresAt") is { } expires && expires < now;
        if (!expired && (owner is null || Text(held, "owner") != owner))
        {
            return false;
        }
        try
        {
            await _table.UpdateEntityAsync(entity, held.ETag, TableUpdateMode.Replace, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (RequestFailedException e) when (e.Status is 404 or 412)
        {
            return false;
        }
        catch (RequestFailedException e)
        {
            throw Failure("UpdateEntity", e);
        }
    }

    private async Task<TableEntity?> FindAsync(string partition, string row, CancellationToken cancellationToken)
    {
        NullableResponse<TableEntity> response = await Call("GetEntity", () => _table.GetEntityIfExistsAsync<TableEntity>(partition, row, cancellationToken: cancellationToken)).ConfigureAwait(false);
        return response.HasValue ? response.Value : null;
    }

    private async Task<T> Call<T>(string operation, Func<Task<T>> call)
    {
        try
        {
            return await call().ConfigureAwait(false);
        }
        catch (RequestFailedException e)
        {
            throw Failure(operation, e);
        }
    }

    private CaptureException Failure(string operation, RequestFailedException e)
        => new($"table {Table} {operation}: {AzureCaptureConnector.Describe(e)}", e);

    private static string Text(TableEntity? entity, string name) => entity?.GetString(name) ?? "?";

    private static string Iso(DateTimeOffset at) => at.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture);
}
