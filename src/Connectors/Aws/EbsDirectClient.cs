using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text.Json;
using Amazon.Runtime;
using Amazon.Runtime.Internal.Auth;
using Amazon.Util;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Aws;

/// <summary>One written block of a snapshot (ListSnapshotBlocks).</summary>
public readonly record struct SnapshotBlock(int BlockIndex, string BlockToken);

/// <summary>A page of ListSnapshotBlocks: the blocks, the block size (bytes), the volume size (GiB) and the next token.</summary>
public sealed record SnapshotBlockPage(IReadOnlyList<SnapshotBlock> Blocks, int BlockSize, long VolumeSizeGiB, string? NextToken);

/// <summary>
/// The two read calls of the EBS direct APIs, over HTTPS (REST-JSON, no EBS SDK package is served here), each request
/// signed with Signature Version 4 by AWSSDK.Core's own signer (<see cref="AWS4Signer"/>: canonical request and
/// signature) from the SDK's credentials: <c>GET /snapshots/{id}/blocks</c> (ListSnapshotBlocks, JSON
/// <c>{"Blocks":[{"BlockIndex","BlockToken"}],"BlockSize","VolumeSize","NextToken","ExpiryTime"}</c>) and
/// <c>GET /snapshots/{id}/blocks/{index}?blockToken=</c> (GetSnapshotBlock: the block's bytes, with
/// <c>x-amz-Data-Length</c>, <c>x-amz-Checksum</c> = base64 SHA-256 and <c>x-amz-Checksum-Algorithm</c> = SHA256, which
/// is checked for every block). The role needs ebs:ListSnapshotBlocks and ebs:GetSnapshotBlock on the snapshots.
/// </summary>
public sealed class EbsDirectClient : IDisposable
{
    /// <summary>Largest block the API serves (512 KiB) and the largest accepted.</summary>
    public const int MaxBlockSize = 512 * 1024;

    private const int MaxListBytes = 4 << 20;
    private const int PageSize = 10000;
    private readonly HttpClient _http;
    private readonly AWSCredentials _credentials;
    private readonly string _region;
    private readonly Uri _endpoint;

    /// <summary>A client for <paramref name="region"/>, at <paramref name="endpoint"/> (null: https://ebs.REGION.amazonaws.com).</summary>
    public EbsDirectClient(AWSCredentials credentials, string region, string? endpoint, HttpMessageHandler? handler = null)
    {
        _credentials = credentials;
        _region = region;
        _endpoint = new Uri((endpoint ?? $"https://ebs.{region}.amazonaws.com").TrimEnd('/') + "/");
        _http = handler is null ? new HttpClient() : new HttpClient(handler);
        _http.Timeout = TimeSpan.FromMinutes(2);
    }

    /// <summary>Every request id the service returned (x-amzn-RequestId), for the manifest.</summary>
    public Action<string, string>? OnRequestId { get; set; }

    /// <summary>One page of ListSnapshotBlocks.</summary>
    public async Task<SnapshotBlockPage> ListSnapshotBlocksAsync(string snapshotId, string? nextToken, CancellationToken cancellationToken)
    {
        var query = new SortedDictionary<string, string>(StringComparer.Ordinal) { ["maxResults"] = PageSize.ToString(CultureInfo.InvariantCulture) };
        if (nextToken is not null)
        {
            query["pageToken"] = nextToken;
        }
        using HttpResponseMessage response = await SendAsync($"snapshots/{Uri.EscapeDataString(snapshotId)}/blocks", query, "ListSnapshotBlocks", cancellationToken).ConfigureAwait(false);
        byte[] body = await ReadBoundedAsync(response, MaxListBytes, cancellationToken).ConfigureAwait(false);
        try
        {
            using JsonDocument json = JsonDocument.Parse(body);
            JsonElement root = json.RootElement;
            int blockSize = root.GetProperty("BlockSize").GetInt32();
            if (blockSize is <= 0 or > MaxBlockSize || blockSize % 4096 != 0)
            {
                throw new CaptureException($"ebs ListSnapshotBlocks {snapshotId}: BlockSize {blockSize} is not a multiple of 4096 up to {MaxBlockSize}");
            }
            var blocks = new List<SnapshotBlock>();
            if (root.TryGetProperty("Blocks", out JsonElement list))
            {
                foreach (JsonElement block in list.EnumerateArray())
                {
                    blocks.Add(new SnapshotBlock(block.GetProperty("BlockIndex").GetInt32(), block.GetProperty("BlockToken").GetString() ?? ""));
                }
            }
            string? next = root.TryGetProperty("NextToken", out JsonElement token) && token.ValueKind == JsonValueKind.String ? token.GetString() : null;
            return new SnapshotBlockPage(blocks, blockSize, root.GetProperty("VolumeSize").GetInt64(), string.IsNullOrEmpty(next) ? null : next);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new CaptureException($"ebs ListSnapshotBlocks {snapshotId}: unexpected answer: {CaptureException.OneLine(e.Message)}", e);
        }
    }

    /// <summary>One block's bytes into <paramref name="destination"/> (its length = the block size); the SHA-256 checksum is checked.</summary>
    /// <returns>The base64 SHA-256 checksum EBS sent.</returns>
    public async Task<string> GetSnapshotBlockAsync(string snapshotId, SnapshotBlock block, Memory<byte> destination, CancellationToken cancellationToken)
    {
        var query = new SortedDictionary<string, string>(StringComparer.Ordinal) { ["blockToken"] = block.BlockToken };
        string where = $"ebs GetSnapshotBlock {snapshotId} block {block.BlockIndex}";
        using HttpResponseMessage response = await SendAsync($"snapshots/{Uri.EscapeDataString(snapshotId)}/blocks/{block.BlockIndex.ToString(CultureInfo.InvariantCulture)}", query, "GetSnapshotBlock", cancellationToken).ConfigureAwait(false);
        string? algorithm = Header(response, "x-amz-Checksum-Algorithm");
        string? checksum = Header(response, "x-amz-Checksum");
        string? length = Header(response, "x-amz-Data-Length");
        if (algorithm != "SHA256" || checksum is null)
        {
            throw new CaptureException($"{where}: no SHA256 checksum in the answer (x-amz-Checksum-Algorithm '{algorithm}')");
        }
        byte[] data = await ReadBoundedAsync(response, MaxBlockSize, cancellationToken).ConfigureAwait(false);
        if (data.Length != destination.Length || (length is not null && length != data.Length.ToString(CultureInfo.InvariantCulture)))
        {
            throw new CaptureException($"{where}: {data.Length} bytes (x-amz-Data-Length {length}), expected {destination.Length}");
        }
        string actual = Convert.ToBase64String(SHA256.HashData(data));
        if (actual != checksum)
        {
            throw new CaptureException($"{where}: SHA-256 {actual} of the bytes received differs from x-amz-Checksum {checksum}");
        }
        data.CopyTo(destination);
        return checksum;
    }

    private static string? Header(HttpResponseMessage response, string name)
        => response.Headers.TryGetValues(name, out IEnumerable<string>? values) || response.Content.Headers.TryGetValues(name, out values) ? values.FirstOrDefault() : null;

    private async Task<HttpResponseMessage> SendAsync(string path, SortedDictionary<string, string> query, string operation, CancellationToken cancellationToken)
    {
        string canonicalQuery = string.Join("&", query.Select(p => $"{AWSSDKUtils.UrlEncode(p.Key, false)}={AWSSDKUtils.UrlEncode(p.Value, false)}"));
        var uri = new Uri(_endpoint, path + "?" + canonicalQuery);
        using var request = new HttpRequestMessage(HttpMethod.Get, uri);
        Sign(request, "/" + path, canonicalQuery, await _credentials.GetCredentialsAsync().ConfigureAwait(false));
        HttpResponseMessage response;
        try
        {
            response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        }
        catch (HttpRequestException e)
        {
            throw new CaptureException($"ebs {operation} {uri.GetLeftPart(UriPartial.Path)}: {CaptureException.OneLine(e.Message)}", e);
        }
        if (Header(response, "x-amzn-RequestId") is { } id)
        {
            OnRequestId?.Invoke(operation, id);
        }
        if (!response.IsSuccessStatusCode)
        {
            string text = "";
            try
            {
                text = System.Text.Encoding.UTF8.GetString(await ReadBoundedAsync(response, 4096, cancellationToken).ConfigureAwait(false));
            }
            catch (CaptureException)
            {
            }
            response.Dispose();
            throw new CaptureException($"ebs {operation} {uri.GetLeftPart(UriPartial.Path)}: HTTP {(int)response.StatusCode}: {CaptureException.OneLine(text)}");
        }
        return response;
    }

    /// <summary>Signature Version 4 with the SDK's signer: canonical request and signature by <see cref="AWS4Signer"/>.</summary>
    private void Sign(HttpRequestMessage request, string resourcePath, string canonicalQuery, ImmutableCredentials credentials)
    {
        DateTime now = DateTime.UtcNow;
        string amzDate = now.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        string bodyHash = AWS4Signer.EmptyBodySha256;
        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase)
        {
            ["host"] = request.RequestUri!.IsDefaultPort ? request.RequestUri.Host : $"{request.RequestUri.Host}:{request.RequestUri.Port}",
            ["x-amz-date"] = amzDate,
            ["x-amz-content-sha256"] = bodyHash,
        };
        if (!string.IsNullOrEmpty(credentials.Token))
        {
            headers["x-amz-security-token"] = credentials.Token;
        }
        AWS4SigningResult signature = SdkSigner.Sign(new Uri(_endpoint.GetLeftPart(UriPartial.Authority)), resourcePath, canonicalQuery, headers, bodyHash, credentials, _region, now);
        foreach ((string name, string value) in headers)
        {
            if (name != "host")
            {
                request.Headers.TryAddWithoutValidation(name, value);
            }
        }
        request.Headers.TryAddWithoutValidation("Authorization", signature.ForAuthorizationHeader);
        request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
    }

    /// <summary>Reaches the SDK signer's canonicalisation helpers (protected members of <see cref="AWS4Signer"/>).</summary>
    private sealed class SdkSigner : AWS4Signer
    {
        public static AWS4SigningResult Sign(Uri endpoint, string resourcePath, string canonicalQuery, Dictionary<string, string> headers, string bodyHash,
            ImmutableCredentials credentials, string region, DateTime now)
        {
            IDictionary<string, string> sorted = SortAndPruneHeaders(headers);
            string signedHeaders = CanonicalizeHeaderNames(sorted);
            string canonical = CanonicalizeRequest(endpoint, resourcePath, "GET", sorted, canonicalQuery, bodyHash);
            return ComputeSignature(credentials, region, now, "ebs", signedHeaders, canonical);
        }
    }

    private static async Task<byte[]> ReadBoundedAsync(HttpResponseMessage response, int limit, CancellationToken cancellationToken)
    {
        if (response.Content.Headers.ContentLength is > 0 and var declared && declared > limit)
        {
            throw new CaptureException($"ebs answer of {declared} bytes is over the {limit}-byte limit");
        }
        await using Stream stream = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        using var buffer = new MemoryStream();
        byte[] chunk = new byte[81920];
        int read;
        while ((read = await stream.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > limit)
            {
                throw new CaptureException($"ebs answer is over the {limit}-byte limit");
            }
            buffer.Write(chunk, 0, read);
        }
        return buffer.ToArray();
    }

    /// <inheritdoc />
    public void Dispose() => _http.Dispose();
}
