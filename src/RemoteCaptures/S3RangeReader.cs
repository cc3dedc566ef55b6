using System.Net;
using Amazon;
using Amazon.Runtime;
using Amazon.Runtime.Credentials;
using Amazon.S3;
using Amazon.S3.Model;
using CloudMem.VmStateParsers.Remote;

namespace CloudMem.RemoteCaptures;

/// <summary>
/// An S3 object read with ranged GetObject requests. The client uses the SDK's standard retry mode (throttling,
/// 5xx and dropped connections before a response are retried there); a body cut off mid-transfer, which the SDK does
/// not retry, is resumed from the last byte received, a few times, since the ranged body is our own protocol step.
/// Every request is conditional on the ETag seen at open (an object replaced mid-analysis is an error, not a mix).
/// </summary>
/// <remarks>Thread-safe. Owns the client when it built it.</remarks>
public sealed class S3RangeReader : IRangeReader
{
    private const int MaxResumes = 4;
    private readonly IAmazonS3 _s3;
    private readonly bool _ownsClient;
    private readonly string _bucket;
    private readonly string _key;
    private readonly string? _etag;

    private S3RangeReader(IAmazonS3 s3, bool ownsClient, string bucket, string key, string displayName, long length, string? etag)
    {
        _s3 = s3;
        _ownsClient = ownsClient;
        _bucket = bucket;
        _key = key;
        DisplayName = displayName;
        Length = length;
        _etag = etag;
    }

    /// <inheritdoc />
    public string DisplayName { get; }

    /// <inheritdoc />
    public long Length { get; }

    /// <summary>
    /// A client from the environment: credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY(/AWS_SESSION_TOKEN) when set,
    /// otherwise the SDK's default chain (profile, SSO, container and instance roles); the endpoint from
    /// AWS_ENDPOINT_URL_S3 or AWS_ENDPOINT_URL (path-style addressing then), the region from AWS_REGION/AWS_DEFAULT_REGION.
    /// </summary>
    public static IAmazonS3 CreateClient(Func<string, string?> environment)
    {
        var config = new AmazonS3Config
        {
            RetryMode = RequestRetryMode.Standard,
            MaxErrorRetry = 6,
            Timeout = TimeSpan.FromSeconds(60),
            RequestChecksumCalculation = RequestChecksumCalculation.WHEN_REQUIRED,
            ResponseChecksumValidation = ResponseChecksumValidation.WHEN_REQUIRED,
        };
        string? region = environment("AWS_REGION") ?? environment("AWS_DEFAULT_REGION");
        string? endpoint = environment("AWS_ENDPOINT_URL_S3") ?? environment("AWS_ENDPOINT_URL");
        if (endpoint is not null)
        {
            config.ServiceURL = endpoint;
            config.ForcePathStyle = true;
            config.AuthenticationRegion = region ?? "us-east-1";
        }
        else if (region is not null)
        {
            config.RegionEndpoint = RegionEndpoint.GetBySystemName(region);
        }
        string? keyId = environment("AWS_ACCESS_KEY_ID");
        string? secret = environment("AWS_SECRET_ACCESS_KEY");
        AWSCredentials credentials = keyId is not null && secret is not null
            ? (environment("AWS_SESSION_TOKEN") is { } token ? new SessionAWSCredentials(keyId, secret, token) : new BasicAWSCredentials(keyId, secret))
            : DefaultAWSCredentialsIdentityResolver.GetCredentials(config);
        return new AmazonS3Client(credentials, config);
    }

    /// <summary>Opens s3://<paramref name="bucket"/>/<paramref name="key"/>: one HeadObject for its length and ETag.</summary>
    /// <exception cref="RemoteReadException">missing, access denied, or the store could not be reached.</exception>
    public static async Task<S3RangeReader> OpenAsync(IAmazonS3 s3, bool ownsClient, string bucket, string key, CancellationToken cancellationToken)
    {
        string display = $"s3://{bucket}/{key}";
        try
        {
            GetObjectMetadataResponse head = await s3.GetObjectMetadataAsync(new GetObjectMetadataRequest { BucketName = bucket, Key = key }, cancellationToken).ConfigureAwait(false);
            return new S3RangeReader(s3, ownsClient, bucket, key, display, head.ContentLength, head.ETag);
        }
        catch (Exception e) when (e is AmazonServiceException or AmazonClientException or HttpRequestException or IOException)
        {
            if (ownsClient)
            {
                s3.Dispose();
            }
            throw Translate(e, display, "HeadObject");
        }
    }

    /// <inheritdoc />
    public async ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        int wanted = (int)Math.Max(0, Math.Min(destination.Length, Length - offset));
        int done = 0;
        int resumes = 0;
        while (done < wanted)
        {
            long from = offset + done;
            long to = offset + wanted - 1;
            string operation = $"GetObject bytes={from}-{to}";
            try
            {
                var request = new GetObjectRequest { BucketName = _bucket, Key = _key, ByteRange = new ByteRange(from, to), EtagToMatch = _etag };
                using GetObjectResponse response = await _s3.GetObjectAsync(request, cancellationToken).ConfigureAwait(false);
                using Stream body = response.ResponseStream;
                int before = done;
                while (done < wanted)
                {
                    int n = await body.ReadAsync(destination[done..wanted], cancellationToken).ConfigureAwait(false);
                    if (n == 0)
                    {
                        break;
                    }
                    done += n;
                }
                if (done < wanted && (done == before || ++resumes > MaxResumes))
                {
                    throw new RemoteReadException(DisplayName, operation, $"the body ended after {done - before} bytes");
                }
            }
            catch (Exception e) when (e is IOException or HttpRequestException && e is not RemoteReadException && ++resumes <= MaxResumes)
            {
                // The connection dropped while the body was streaming: ask again for the rest.
            }
            catch (Exception e) when (e is AmazonServiceException or AmazonClientException or HttpRequestException or IOException && e is not RemoteReadException)
            {
                throw Translate(e, DisplayName, operation);
            }
        }
        return done;
    }

    private static RemoteReadException Translate(Exception e, string display, string operation)
    {
        string problem = e switch
        {
            AmazonServiceException { StatusCode: HttpStatusCode.NotFound } s => s.ErrorCode == "NoSuchBucket" ? "no such bucket" : "no such object (404)",
            AmazonServiceException { StatusCode: HttpStatusCode.Forbidden } s => $"access denied (403 {s.ErrorCode})",
            AmazonServiceException { StatusCode: HttpStatusCode.PreconditionFailed } => "the object changed since it was opened (ETag no longer matches)",
            AmazonServiceException s => $"{(int)s.StatusCode} {s.ErrorCode}: {s.Message}",
            _ => e.Message,
        };
        return new RemoteReadException(display, operation, problem.ReplaceLineEndings(" "), e);
    }

    /// <inheritdoc />
    public void Dispose()
    {
        if (_ownsClient)
        {
            _s3.Dispose();
        }
    }
}
