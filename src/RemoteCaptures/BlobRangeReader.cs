using Azure;
using Azure.Identity;
using Azure.Storage.Blobs;
using Azure.Storage.Blobs.Models;
using CloudMem.VmStateParsers.Remote;

namespace CloudMem.RemoteCaptures;

/// <summary>
/// An Azure blob read with ranged downloads. Retries are the Blob client's own (exponential, with its retriable
/// download stream resuming a body cut off mid-transfer). Every download is conditional on the ETag seen at open.
/// </summary>
/// <remarks>Thread-safe (the SDK client is).</remarks>
public sealed class BlobRangeReader : IRangeReader
{
    private readonly BlobClient _blob;
    private readonly ETag _etag;

    private BlobRangeReader(BlobClient blob, string displayName, long length, ETag etag)
    {
        _blob = blob;
        DisplayName = displayName;
        Length = length;
        _etag = etag;
    }

    /// <inheritdoc />
    public string DisplayName { get; }

    /// <inheritdoc />
    public long Length { get; }

    /// <summary>The client options: the SDK's exponential retry policy, a bounded network timeout.</summary>
    public static BlobClientOptions ClientOptions()
    {
        var options = new BlobClientOptions();
        options.Retry.Mode = Azure.Core.RetryMode.Exponential;
        options.Retry.MaxRetries = 6;
        options.Retry.Delay = TimeSpan.FromMilliseconds(200);
        options.Retry.MaxDelay = TimeSpan.FromSeconds(5);
        options.Retry.NetworkTimeout = TimeSpan.FromSeconds(60);
        return options;
    }

    /// <summary>
    /// The client for <paramref name="location"/>: a SAS in the URL is used as given; otherwise the account key of
    /// AZURE_STORAGE_CONNECTION_STRING when it is for the same account (and endpoint); otherwise DefaultAzureCredential
    /// (environment, workload and managed identity, Azure CLI, ...).
    /// </summary>
    public static BlobClient CreateClient(RemoteLocation location, Func<string, string?> environment, BlobClientOptions? options = null)
    {
        options ??= ClientOptions();
        Uri uri = location.Uri;
        if (uri.Query.Contains("sig=", StringComparison.OrdinalIgnoreCase))
        {
            return new BlobClient(uri, options);
        }
        var plain = new Uri(uri.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped));
        if (environment("AZURE_STORAGE_CONNECTION_STRING") is { Length: > 0 } connectionString)
        {
            var service = new BlobServiceClient(connectionString, options);
            BlobClient viaConnection = service.GetBlobContainerClient(location.Container).GetBlobClient(location.Key);
            if (Uri.Compare(viaConnection.Uri, plain, UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.Unescaped, StringComparison.OrdinalIgnoreCase) == 0)
            {
                return viaConnection;
            }
        }
        return new BlobClient(plain, new DefaultAzureCredential(), options);
    }

    /// <summary>Opens the blob: one GetProperties for its length and ETag.</summary>
    /// <exception cref="RemoteReadException">missing, access denied, no usable credential, or the store could not be reached.</exception>
    public static async Task<BlobRangeReader> OpenAsync(BlobClient blob, string displayName, CancellationToken cancellationToken)
    {
        try
        {
            BlobProperties properties = (await blob.GetPropertiesAsync(cancellationToken: cancellationToken).ConfigureAwait(false)).Value;
            return new BlobRangeReader(blob, displayName, properties.ContentLength, properties.ETag);
        }
        catch (Exception e) when (e is RequestFailedException or AuthenticationFailedException or IOException or HttpRequestException)
        {
            throw Translate(e, displayName, "GetProperties");
        }
    }

    /// <inheritdoc />
    public async ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        int wanted = (int)Math.Max(0, Math.Min(destination.Length, Length - offset));
        string operation = $"Download bytes={offset}-{offset + wanted - 1}";
        try
        {
            var options = new BlobDownloadOptions { Range = new Azure.HttpRange(offset, wanted), Conditions = new BlobRequestConditions { IfMatch = _etag } };
            using BlobDownloadStreamingResult result = (await _blob.DownloadStreamingAsync(options, cancellationToken).ConfigureAwait(false)).Value;
            int done = await result.Content.ReadAtLeastAsync(destination[..wanted], wanted, throwOnEndOfStream: false, cancellationToken).ConfigureAwait(false);
            if (done < wanted)
            {
                throw new RemoteReadException(DisplayName, operation, $"the body ended after {done} of {wanted} bytes");
            }
            return done;
        }
        catch (Exception e) when (e is RequestFailedException or AuthenticationFailedException or IOException or HttpRequestException && e is not RemoteReadException)
        {
            throw Translate(e, DisplayName, operation);
        }
    }

    private static RemoteReadException Translate(Exception e, string display, string operation)
    {
        string problem = e switch
        {
            RequestFailedException { Status: 404 } r => r.ErrorCode == "ContainerNotFound" ? "no such container" : "no such blob (404)",
            RequestFailedException { Status: 401 or 403 } r => $"access denied ({r.Status} {r.ErrorCode})",
            RequestFailedException { Status: 412 } => "the blob changed since it was opened (ETag no longer matches)",
            RequestFailedException r => $"{r.Status} {r.ErrorCode}",
            AuthenticationFailedException => "no usable Azure credential (set AZURE_STORAGE_CONNECTION_STRING, use a SAS URL, or sign in for DefaultAzureCredential)",
            _ => e.Message,
        };
        return new RemoteReadException(display, operation, problem.ReplaceLineEndings(" "), e);
    }

    /// <inheritdoc />
    public void Dispose()
    {
    }
}
