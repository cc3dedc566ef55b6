using Azure.Storage;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;
using Azure.Storage.Sas;

namespace CloudMem.Connectors.Azure;

/// <summary>A SAS URL for exactly one blob. <see cref="Uri"/> is a secret: it goes into the guest script and nowhere else.</summary>
/// <param name="Uri">The blob URL with the SAS query.</param>
/// <param name="BlobName">The one blob it is valid for.</param>
/// <param name="Permissions">The permission letters (e.g. "c" for create-only, "r" for read-only).</param>
/// <param name="ExpiresOn">When it stops working.</param>
/// <param name="Kind">"user-delegation" (signed with a key from Entra ID) or "account-key".</param>
/// <param name="Signature">The sig value (registered with the secret scrubber).</param>
internal sealed record ScopedSas(Uri Uri, string BlobName, string Permissions, DateTimeOffset ExpiresOn, string Kind, string Signature)
{
    /// <summary>What may be said about it in a manifest or a log: everything but the URL's query.</summary>
    public override string ToString() => $"{Kind} SAS '{Permissions}' for blob {BlobName}, expires {ExpiresOn:O}";
}

/// <summary>
/// Issues short-lived SAS tokens scoped to one blob. With a TokenCredential (production) it signs with a user
/// delegation key (GetUserDelegationKey, no account key involved); with an account key (emulators, legacy accounts)
/// it signs a service SAS. HTTPS only unless the container is an http emulator endpoint.
/// </summary>
internal sealed class BlobSasIssuer
{
    private readonly BlobServiceClient _service;
    private readonly StorageSharedKeyCredential? _accountKey;
    private readonly TimeProvider _time;
    private UserDelegationKey? _delegationKey;

    public BlobSasIssuer(BlobServiceClient service, StorageSharedKeyCredential? accountKey, TimeProvider? time = null)
    {
        _service = service;
        _accountKey = accountKey;
        _time = time ?? TimeProvider.System;
    }

    /// <summary>"user-delegation" or "account-key".</summary>
    public string Kind => _accountKey is null ? "user-delegation" : "account-key";

    /// <summary>
    /// The SAS for uploading one block blob with Put Block + Put Block List: "w" only. Microsoft's SAS permission
    /// tables (Create a service SAS / Create a user delegation SAS) grant "Create or write content, properties,
    /// metadata, or block list" to Write (w), while Create (c) only covers "write a new blob, snapshot a blob, or copy a
    /// blob to a new blob"; so writing blocks and the block list needs "w", and "c" adds nothing to it. That an existing
    /// blob is never replaced is enforced by the guest's If-None-Match: * on Put Block List (and by the container's
    /// immutability policy), not by the permission. Azure and azurite get the same string.
    /// </summary>
    public Task<ScopedSas> BlockUploadAsync(string container, string blobName, TimeSpan lifetime, CancellationToken cancellationToken)
        => IssueAsync(container, blobName, BlockUploadPermissions, lifetime, cancellationToken);

    /// <summary>The permissions of <see cref="BlockUploadAsync"/>.</summary>
    public const BlobSasPermissions BlockUploadPermissions = BlobSasPermissions.Write;

    /// <summary>Read-only SAS for one blob (the staged tool).</summary>
    public Task<ScopedSas> ReadOnlyAsync(string container, string blobName, TimeSpan lifetime, CancellationToken cancellationToken)
        => IssueAsync(container, blobName, BlobSasPermissions.Read, lifetime, cancellationToken);

    private async Task<ScopedSas> IssueAsync(string container, string blobName, BlobSasPermissions permissions, TimeSpan lifetime,
        CancellationToken cancellationToken)
    {
        if (lifetime <= TimeSpan.Zero || lifetime > MaxLifetime)
        {
            throw new ArgumentOutOfRangeException(nameof(lifetime), $"a SAS lifetime must be between 0 and {MaxLifetime.TotalHours} hours");
        }
        DateTimeOffset now = _time.GetUtcNow();
        // A small clock-skew allowance before now; the expiry is bounded by the lifetime asked for.
        DateTimeOffset startsOn = now.AddMinutes(-5);
        DateTimeOffset expiresOn = now.Add(lifetime);
        BlobClient blob = _service.GetBlobContainerClient(container).GetBlobClient(blobName);
        var builder = new BlobSasBuilder
        {
            BlobContainerName = container,
            BlobName = blobName,
            Resource = "b",
            StartsOn = startsOn,
            ExpiresOn = expiresOn,
            Protocol = blob.Uri.Scheme == Uri.UriSchemeHttps ? SasProtocol.Https : SasProtocol.HttpsAndHttp,
        };
        builder.SetPermissions(permissions);
        BlobSasQueryParameters query;
        if (_accountKey is not null)
        {
            query = builder.ToSasQueryParameters(_accountKey);
        }
        else
        {
            if (_delegationKey is null || _delegationKey.SignedExpiresOn < expiresOn)
            {
                // The key lives exactly as long as the SAS signed with it needs (at most 7 days by service rule).
                _delegationKey = (await _service.GetUserDelegationKeyAsync(startsOn, expiresOn, cancellationToken).ConfigureAwait(false)).Value;
            }
            query = builder.ToSasQueryParameters(_delegationKey, _service.AccountName);
        }
        var uri = new BlobUriBuilder(blob.Uri) { Sas = query }.ToUri();
        return new ScopedSas(uri, blobName, query.Permissions, query.ExpiresOn, Kind, query.Signature);
    }

    /// <summary>Upper bound of any SAS we issue.</summary>
    public static readonly TimeSpan MaxLifetime = TimeSpan.FromHours(6);
}
