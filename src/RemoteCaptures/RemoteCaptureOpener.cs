using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Remote;

namespace CloudMem.RemoteCaptures;

/// <summary>
/// Opens a capture that lies in object storage, in place: s3://bucket/key, an Azure blob URL, or any http(s) URL that
/// serves byte ranges. The result is the same <see cref="RunMappedMemory"/> a local file gives, reading through a
/// bounded block cache; its <see cref="RunMappedMemory.RemoteStats"/> say what was fetched.
/// </summary>
public static class RemoteCaptureOpener
{
    /// <summary>Opens the object's transport (one metadata request), without parsing it.</summary>
    /// <param name="address">The address (may carry a SAS token: it is never printed).</param>
    /// <param name="environment">Where configuration comes from (AWS_*, AZURE_STORAGE_CONNECTION_STRING); the process environment when null.</param>
    /// <param name="cancellationToken">Cancellation.</param>
    /// <exception cref="RemoteReadException">the object is missing, access is denied, or the store is unreachable.</exception>
    /// <exception cref="FormatException">the address is not an s3/http/https URL.</exception>
    public static async Task<IRangeReader> OpenReaderAsync(string address, Func<string, string?>? environment = null, CancellationToken cancellationToken = default)
    {
        environment ??= Environment.GetEnvironmentVariable;
        RemoteLocation location = RemoteLocation.Parse(address, environment("AZURE_STORAGE_CONNECTION_STRING"));
        switch (location.Kind)
        {
            case RemoteKind.S3:
                Amazon.S3.IAmazonS3 s3;
                try
                {
                    s3 = S3RangeReader.CreateClient(environment);
                }
                catch (Amazon.Runtime.AmazonClientException)
                {
                    throw new RemoteReadException(location.DisplayName, "credentials", "no AWS credentials found (environment, profile, SSO, container or instance role)");
                }
                return await S3RangeReader.OpenAsync(s3, ownsClient: true, location.Container!, location.Key!, cancellationToken).ConfigureAwait(false);
            case RemoteKind.Blob:
                return await BlobRangeReader.OpenAsync(BlobRangeReader.CreateClient(location, environment), location.DisplayName, cancellationToken).ConfigureAwait(false);
            default:
                return await HttpRangeReader.OpenAsync(location, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Opens and parses a remote capture in place.</summary>
    /// <exception cref="RemoteReadException">as for <see cref="OpenReaderAsync"/>.</exception>
    /// <exception cref="DumpFormatException">not a capture, or its structures could not be fetched; one line naming the address.</exception>
    public static RunMappedMemory Open(string address, RemoteReadOptions? options = null, string? format = null, Func<string, string?>? environment = null)
    {
        IRangeReader reader = OpenReaderAsync(address, environment).GetAwaiter().GetResult();
        return CaptureOpener.Open(reader, options, limits: null, format);
    }
}
