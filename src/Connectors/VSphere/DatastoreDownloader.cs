using System.Buffers;
using System.Diagnostics;
using System.Net;
using System.Net.Http.Headers;
using CloudMem.Connectors.Core;
using Polly;
using Polly.Retry;
using Refit;

namespace CloudMem.Connectors.VSphere;

/// <summary>The datastore file service of ESXi and vCenter: <c>GET /folder/{path}?dcPath=..&amp;dsName=..</c>.</summary>
public interface IDatastoreFolderApi
{
    /// <summary>Starts a download (headers read; the caller reads and disposes the body). <paramref name="range"/>: "bytes=N-" or null.</summary>
    [Get("/folder/{**path}")]
    Task<HttpResponseMessage> GetAsync(string path, [AliasAs("dcPath")] string dcPath, [AliasAs("dsName")] string dsName,
        [Header("Range")] string? range, CancellationToken cancellationToken);
}

/// <summary>Sends the vSphere session with /folder requests: the vmware_soap_session cookie and the VI/JSON header.</summary>
public sealed class FolderSessionHandler : DelegatingHandler
{
    private readonly Func<string?> _sessionKey;

    /// <summary>Reads the session key at each request from <paramref name="sessionKey"/>.</summary>
    public FolderSessionHandler(Func<string?> sessionKey) => _sessionKey = sessionKey;

    /// <inheritdoc />
    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        if (_sessionKey() is { Length: > 0 } key)
        {
            request.Headers.TryAddWithoutValidation("Cookie", $"vmware_soap_session=\"{key}\"");
            request.Headers.TryAddWithoutValidation(VimJsonSessionHandler.SessionHeader, key);
        }
        return base.SendAsync(request, cancellationToken);
    }
}

/// <summary>Bytes moved so far for one file (for progress display).</summary>
public readonly record struct TransferProgress(string File, long Bytes, long? Total);

/// <summary>What a transfer did.</summary>
public sealed record TransferResult(long Bytes, int Resumes, TimeSpan Elapsed);

/// <summary>How the downloader retries.</summary>
public sealed record DownloadPolicy
{
    /// <summary>Retries after a dropped connection or a 5xx (each resumes at the last byte written).</summary>
    public int MaxRetries { get; init; } = 8;

    /// <summary>First retry delay (exponential after that).</summary>
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>A read that delivers nothing for this long counts as a dropped connection.</summary>
    public TimeSpan ReadIdleTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>Buffer size (memory stays bounded by it whatever the file size).</summary>
    public int BufferSize { get; init; } = 1 << 20;
}

/// <summary>
/// Streams a datastore file into a target stream (a <see cref="HashingStream"/> over the local file, or a
/// <see cref="Sha256Sink"/> for a verification pass). A dropped connection, a stalled read or a 5xx is retried by a
/// Polly pipeline that resumes with <c>Range: bytes=N-</c> from the last byte written, checking that the server answers
/// 206 with a Content-Range starting exactly there (bytes are never written twice or skipped, so the hash computed while
/// streaming covers the file exactly once).
/// </summary>
/// <remarks>Not thread-safe; one transfer at a time per instance. Memory: one pooled buffer.</remarks>
public sealed class DatastoreDownloader
{
    private readonly IDatastoreFolderApi _api;
    private readonly DownloadPolicy _policy;
    private readonly CaptureLog _log;

    /// <summary>Creates a downloader over <paramref name="api"/>.</summary>
    public DatastoreDownloader(IDatastoreFolderApi api, DownloadPolicy policy, CaptureLog log)
    {
        _api = api;
        _policy = policy;
        _log = log;
    }

    /// <summary>
    /// Copies <paramref name="file"/> into <paramref name="target"/>. <paramref name="expectedSize"/> (-1: unknown)
    /// must equal the size the server reports.
    /// </summary>
    /// <exception cref="FileNotFoundException">the server answered 404 (no such file).</exception>
    /// <exception cref="CaptureException">refused, sizes disagree, Range not honoured, or retries exhausted.</exception>
    public async Task<TransferResult> TransferAsync(DatastorePath file, string dcPath, Stream target, long expectedSize,
        IProgress<TransferProgress>? progress, CancellationToken cancellationToken)
    {
        long written = 0;
        long? total = expectedSize >= 0 ? expectedSize : null;
        int resumes = 0;
        var clock = Stopwatch.StartNew();
        ResiliencePipeline pipeline = new ResiliencePipelineBuilder()
            .AddRetry(new RetryStrategyOptions
            {
                MaxRetryAttempts = _policy.MaxRetries,
                Delay = _policy.RetryDelay,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                ShouldHandle = new PredicateBuilder().Handle<HttpRequestException>().Handle<IOException>(e => e is not FileNotFoundException).Handle<TransientTransferException>(),
                OnRetry = args =>
                {
                    resumes++;
                    _log.Warn($"download of {file} interrupted at byte {written} ({CaptureException.OneLine(args.Outcome.Exception?.Message ?? "?")}); resuming with Range bytes={written}- (retry {args.AttemptNumber + 1} of {_policy.MaxRetries})");
                    return ValueTask.CompletedTask;
                },
            })
            .Build();
        byte[] buffer = ArrayPool<byte>.Shared.Rent(_policy.BufferSize);
        try
        {
            await pipeline.ExecuteAsync(async token =>
            {
                if (total is not null && written == total)
                {
                    return;
                }
                string? range = written > 0 ? $"bytes={written}-" : null;
                using HttpResponseMessage response = await _api.GetAsync(file.Path, dcPath, file.Datastore, range, token).ConfigureAwait(false);
                long? remaining = CheckResponse(response, file, written, ref total);
                await using Stream body = await response.Content.ReadAsStreamAsync(token).ConfigureAwait(false);
                using var idle = CancellationTokenSource.CreateLinkedTokenSource(token);
                while (true)
                {
                    idle.CancelAfter(_policy.ReadIdleTimeout);
                    int read;
                    try
                    {
                        read = await body.ReadAsync(buffer.AsMemory(0, _policy.BufferSize), idle.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!token.IsCancellationRequested)
                    {
                        throw new TransientTransferException($"no data for {Resilience.Describe(_policy.ReadIdleTimeout)}");
                    }
                    if (read == 0)
                    {
                        break;
                    }
                    if (total is not null && written + read > total)
                    {
                        throw new CaptureException($"{file}: the server sent more than the {total} bytes it announced");
                    }
                    try
                    {
                        await target.WriteAsync(buffer.AsMemory(0, read), token).ConfigureAwait(false);
                    }
                    catch (IOException e)
                    {
                        throw new CaptureException($"writing the copy of {file} failed at byte {written}: {e.Message}", e);
                    }
                    written += read;
                    progress?.Report(new TransferProgress(file.FileName, written, total));
                }
                if (total is not null && written < total)
                {
                    throw new TransientTransferException($"the connection ended at byte {written} of {total}");
                }
                if (remaining is not null && total is null)
                {
                    total = written;
                }
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or TransientTransferException || (e is IOException && e is not FileNotFoundException))
        {
            throw new CaptureException($"download of {file} failed after {_policy.MaxRetries} retries at byte {written}: {CaptureException.OneLine(e.Message)}", e);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        total ??= written;
        if (expectedSize >= 0 && written != expectedSize)
        {
            throw new CaptureException($"{file}: downloaded {written} bytes, the VM layout says {expectedSize}");
        }
        return new TransferResult(written, resumes, clock.Elapsed);
    }

    /// <summary>Checks status and Content-Range; returns the bytes this response will deliver (null: unknown).</summary>
    private static long? CheckResponse(HttpResponseMessage response, DatastorePath file, long written, ref long? total)
    {
        switch (response.StatusCode)
        {
            case HttpStatusCode.NotFound:
                throw new FileNotFoundException($"{file}: not found on the datastore (HTTP 404)");
            case HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden:
                throw new CaptureException($"{file}: download refused (HTTP {(int)response.StatusCode}); the session needs Datastore.Browse and Datastore.FileManagement");
            case HttpStatusCode.RequestedRangeNotSatisfiable when total is not null && written == total:
                return 0;
        }
        if (Resilience.IsTransient(response))
        {
            throw new TransientTransferException($"HTTP {(int)response.StatusCode}");
        }
        if (!response.IsSuccessStatusCode)
        {
            throw new CaptureException($"{file}: download failed with HTTP {(int)response.StatusCode}");
        }
        ContentRangeHeaderValue? contentRange = response.Content.Headers.ContentRange;
        long? length = response.Content.Headers.ContentLength;
        long? announced;
        if (written > 0)
        {
            if (response.StatusCode != HttpStatusCode.PartialContent || contentRange?.From != written)
            {
                throw new CaptureException($"{file}: the server did not resume at byte {written} (HTTP {(int)response.StatusCode}, Content-Range {contentRange?.ToString() ?? "none"}); refusing to splice the copy");
            }
            announced = contentRange.Length;
        }
        else
        {
            announced = response.StatusCode == HttpStatusCode.PartialContent ? contentRange?.Length : length;
        }
        if (announced is not null)
        {
            if (total is not null && announced != total)
            {
                throw new CaptureException($"{file}: the server reports {announced} bytes, the VM layout says {total} (the file changed?)");
            }
            total = announced;
        }
        return length;
    }

    /// <summary>A dropped or stalled transfer: retried with Range.</summary>
    private sealed class TransientTransferException(string message) : Exception(message);
}
