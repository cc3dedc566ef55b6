using System.Net;
using System.Net.Http.Headers;
using CloudMem.VmStateParsers.Remote;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace CloudMem.RemoteCaptures;

/// <summary>
/// A plain http(s) resource read with Range requests (a presigned S3 URL, a web server, a CDN). We own this protocol,
/// so a Polly pipeline retries it: 5xx/408/429, dropped connections and bodies cut short, with exponential back-off
/// and a per-attempt timeout. A server that answers a Range request with the whole resource (200) is refused rather
/// than downloaded.
/// </summary>
/// <remarks>Thread-safe. Owns its HttpClient.</remarks>
public sealed class HttpRangeReader : IRangeReader
{
    private readonly HttpClient _http;
    private readonly Uri _uri;
    private readonly ResiliencePipeline _pipeline;
    private readonly EntityTagHeaderValue? _etag;

    private HttpRangeReader(HttpClient http, Uri uri, string displayName, long length, EntityTagHeaderValue? etag, ResiliencePipeline pipeline)
    {
        _http = http;
        _uri = uri;
        DisplayName = displayName;
        Length = length;
        _etag = etag;
        _pipeline = pipeline;
    }

    /// <inheritdoc />
    public string DisplayName { get; }

    /// <inheritdoc />
    public long Length { get; }

    /// <summary>The retry pipeline: transient HTTP failures retried with exponential back-off and jitter, each attempt bounded.</summary>
    internal static ResiliencePipeline Pipeline(int maxRetries = 6, TimeSpan? attemptTimeout = null) => new ResiliencePipelineBuilder()
        .AddRetry(new RetryStrategyOptions
        {
            MaxRetryAttempts = maxRetries,
            BackoffType = DelayBackoffType.Exponential,
            UseJitter = true,
            Delay = TimeSpan.FromMilliseconds(200),
            MaxDelay = TimeSpan.FromSeconds(5),
            ShouldHandle = new PredicateBuilder().Handle<TransientHttpException>().Handle<HttpRequestException>().Handle<IOException>().Handle<TimeoutRejectedException>(),
        })
        .AddTimeout(attemptTimeout ?? TimeSpan.FromSeconds(60))
        .Build();

    /// <summary>Opens <paramref name="location"/>: a one-byte Range request tells the length and that ranges work.</summary>
    /// <exception cref="RemoteReadException">missing, access denied, no Range support, or unreachable after retries.</exception>
    public static async Task<HttpRangeReader> OpenAsync(RemoteLocation location, CancellationToken cancellationToken)
    {
        var http = new HttpClient(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromMinutes(5), AutomaticDecompression = DecompressionMethods.None })
        {
            Timeout = Timeout.InfiniteTimeSpan, // the pipeline bounds each attempt
        };
        ResiliencePipeline pipeline = Pipeline();
        string operation = "GET bytes=0-0";
        try
        {
            (long length, EntityTagHeaderValue? etag) = await pipeline.ExecuteAsync(async ct =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, location.Uri);
                request.Headers.Range = new RangeHeaderValue(0, 0);
                using HttpResponseMessage response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
                ThrowIfFailed(response, location.DisplayName, operation);
                if (response.StatusCode != HttpStatusCode.PartialContent || response.Content.Headers.ContentRange?.Length is not long total)
                {
                    throw new RemoteReadException(location.DisplayName, operation, $"the server does not serve byte ranges (HTTP {(int)response.StatusCode} without Content-Range); refusing to download the whole object");
                }
                return (total, response.Headers.ETag);
            }, cancellationToken).ConfigureAwait(false);
            return new HttpRangeReader(http, location.Uri, location.DisplayName, length, etag is { IsWeak: false } ? etag : null, pipeline);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or TimeoutRejectedException)
        {
            http.Dispose();
            throw e as RemoteReadException ?? new RemoteReadException(location.DisplayName, operation, Describe(e), e);
        }
        catch
        {
            http.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public async ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken)
    {
        int wanted = (int)Math.Max(0, Math.Min(destination.Length, Length - offset));
        if (wanted == 0)
        {
            return 0;
        }
        string operation = $"GET bytes={offset}-{offset + wanted - 1}";
        try
        {
            return await _pipeline.ExecuteAsync(async ct =>
            {
                using var request = new HttpRequestMessage(HttpMethod.Get, _uri);
                request.Headers.Range = new RangeHeaderValue(offset, offset + wanted - 1);
                if (_etag is not null)
                {
                    request.Headers.IfMatch.Add(_etag);
                }
                using HttpResponseMessage response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, ct).ConfigureAwait(false);
                ThrowIfFailed(response, DisplayName, operation);
                if (response.StatusCode != HttpStatusCode.PartialContent || response.Content.Headers.ContentRange?.From != offset)
                {
                    throw new RemoteReadException(DisplayName, operation, $"HTTP {(int)response.StatusCode} is not the requested range");
                }
                await using Stream body = await response.Content.ReadAsStreamAsync(ct).ConfigureAwait(false);
                int done = await body.ReadAtLeastAsync(destination[..wanted], wanted, throwOnEndOfStream: false, ct).ConfigureAwait(false);
                return done == wanted ? done : throw new TransientHttpException($"the body ended after {done} of {wanted} bytes");
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or IOException or TimeoutRejectedException && e is not RemoteReadException)
        {
            throw new RemoteReadException(DisplayName, operation, Describe(e), e);
        }
    }

    private static void ThrowIfFailed(HttpResponseMessage response, string display, string operation)
    {
        int status = (int)response.StatusCode;
        if (status is >= 500 or 408 or 429)
        {
            throw new TransientHttpException($"HTTP {status} {response.ReasonPhrase}");
        }
        string? problem = status switch
        {
            404 => "not found (HTTP 404)",
            401 or 403 => $"access denied (HTTP {status})",
            412 => "the object changed since it was opened (ETag no longer matches)",
            >= 400 => $"HTTP {status} {response.ReasonPhrase}",
            _ => null,
        };
        if (problem is not null)
        {
            throw new RemoteReadException(display, operation, problem);
        }
    }

    private static string Describe(Exception e) => (e is TimeoutRejectedException ? "timed out" : e.Message).ReplaceLineEndings(" ");

    /// <inheritdoc />
    public void Dispose() => _http.Dispose();

    /// <summary>A failure worth another attempt (5xx, 408, 429, a body cut short).</summary>
    internal sealed class TransientHttpException(string message) : IOException(message);
}
