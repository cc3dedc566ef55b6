using System.Text.Json;
using Azure;
using Azure.Core;
using Azure.ResourceManager;
using Azure.ResourceManager.Compute;
using Azure.ResourceManager.Compute.Models;
using Azure.ResourceManager.Resources;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Azure;

/// <summary>What a managed-disk snapshot is made from.</summary>
/// <param name="SourceId">ARM id of the managed disk (or, for a copy, of the snapshot copied).</param>
/// <param name="CreateOption">Copy (same region) or CopyStart (a background copy; the only way across regions, incremental only).</param>
/// <param name="Incremental">An incremental snapshot (only the changed blocks are stored; billed by use).</param>
internal sealed record AzureSnapshotSource(string SourceId, DiskCreateOption CreateOption, bool Incremental);

/// <summary>
/// Managed-disk snapshots through the Compute SDK (the REST calls "Snapshots - Create Or Update", "Get", "Grant Access"
/// and "Revoke Access"): every call is started with <see cref="WaitUntil.Started"/> and completed by
/// <see cref="CompleteAsync{T}"/>, which follows the operation's Azure-AsyncOperation / Location headers under the
/// caller's timeout.
/// </summary>
internal sealed partial class AzureArm
{
    /// <summary>PUT snapshots/{name} in the snapshot id's subscription and resource group; returns the started operation.</summary>
    public async Task<ArmOperation<SnapshotResource>> StartSnapshotAsync(ResourceIdentifier snapshotId, AzureSnapshotSource source, string location,
        IReadOnlyDictionary<string, string> tags, CancellationToken cancellationToken)
    {
        ResourceGroupResource group = _client.GetResourceGroupResource(
            ResourceGroupResource.CreateResourceIdentifier(snapshotId.SubscriptionId!, snapshotId.ResourceGroupName!));
        var data = new SnapshotData(new AzureLocation(location))
        {
            CreationData = new DiskCreationData(source.CreateOption) { SourceResourceId = new ResourceIdentifier(source.SourceId) },
            Incremental = source.Incremental,
        };
        foreach ((string key, string value) in tags)
        {
            data.Tags[key] = value;
        }
        return await group.GetSnapshots().CreateOrUpdateAsync(WaitUntil.Started, snapshotId.Name, data, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>GET a snapshot; null when it does not exist.</summary>
    public async Task<SnapshotData?> GetSnapshotAsync(ResourceIdentifier snapshotId, CancellationToken cancellationToken)
    {
        try
        {
            return (await _client.GetSnapshotResource(snapshotId).GetAsync(cancellationToken).ConfigureAwait(false)).Value.Data;
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return null;
        }
    }

    /// <summary>POST snapshots/{name}/beginGetAccess (Read for <paramref name="duration"/>); the operation's value carries the read SAS of the snapshot's VHD.</summary>
    public async Task<ArmOperation<AccessUri>> StartGrantReadAsync(ResourceIdentifier snapshotId, TimeSpan duration, CancellationToken cancellationToken)
        => await _client.GetSnapshotResource(snapshotId)
            .GrantAccessAsync(WaitUntil.Started, new GrantAccessData(AccessLevel.Read, checked((int)Math.Ceiling(duration.TotalSeconds))), cancellationToken)
            .ConfigureAwait(false);

    /// <summary>POST snapshots/{name}/endGetAccess (the SAS stops working); returns the started operation.</summary>
    public async Task<ArmOperation> StartRevokeAccessAsync(ResourceIdentifier snapshotId, CancellationToken cancellationToken)
        => await _client.GetSnapshotResource(snapshotId).RevokeAccessAsync(WaitUntil.Started, cancellationToken).ConfigureAwait(false);

    /// <summary>Polls a started operation (its Azure-AsyncOperation or Location URL) every <paramref name="interval"/> until it completes; returns its value.</summary>
    /// <exception cref="CaptureTimeoutException">not completed within <paramref name="timeout"/>.</exception>
    public static Task<T> CompleteAsync<T>(ArmOperation<T> operation, string what, TimeSpan interval, TimeSpan timeout, CancellationToken cancellationToken)
        => Resilience.PollUntilAsync(what, async token =>
        {
            await operation.UpdateStatusAsync(token).ConfigureAwait(false);
            return operation.HasCompleted ? PollState<T>.Finished("Succeeded", operation.Value) : PollState<T>.Pending(OperationState(operation.GetRawResponse()));
        }, interval, timeout, cancellationToken);

    /// <summary><see cref="CompleteAsync{T}"/> for an operation without a value.</summary>
    public static Task CompleteAsync(ArmOperation operation, string what, TimeSpan interval, TimeSpan timeout, CancellationToken cancellationToken)
        => Resilience.PollUntilAsync(what, async token =>
        {
            await operation.UpdateStatusAsync(token).ConfigureAwait(false);
            return operation.HasCompleted ? PollState<bool>.Finished("Succeeded", true) : PollState<bool>.Pending(OperationState(operation.GetRawResponse()));
        }, interval, timeout, cancellationToken);

    /// <summary>The status an operation's last poll reported ("InProgress"), or its HTTP status.</summary>
    internal static string OperationState(Response response)
    {
        try
        {
            using JsonDocument body = JsonDocument.Parse(response.Content.ToMemory());
            if (body.RootElement.ValueKind == JsonValueKind.Object && body.RootElement.TryGetProperty("status", out JsonElement status))
            {
                return status.GetString() ?? $"HTTP {response.Status}";
            }
        }
        catch (JsonException)
        {
        }
        return $"HTTP {response.Status}";
    }
}
