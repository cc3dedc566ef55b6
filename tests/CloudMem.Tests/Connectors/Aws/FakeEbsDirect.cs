using System.Globalization;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>
/// The EBS direct APIs' two read calls as documented, served from disk images (one per snapshot id), inside
/// <see cref="FakeAws"/>: <c>GET /snapshots/{id}/blocks?maxResults&amp;pageToken</c> answers
/// <c>{"Blocks":[{"BlockIndex","BlockToken"}],"BlockSize":524288,"VolumeSize":GiB,"ExpiryTime","NextToken"}</c> listing
/// only the 512 KiB blocks that hold a non-zero byte (pages of at most <see cref="PageLimit"/>), and
/// <c>GET /snapshots/{id}/blocks/{index}?blockToken=</c> answers the block's bytes with <c>x-amz-Data-Length</c>,
/// <c>x-amz-Checksum</c> (base64 SHA-256) and <c>x-amz-Checksum-Algorithm: SHA256</c>. Every request's Signature
/// Version 4 is recomputed here from the canonical request (service "ebs") and must match, else 403.
/// </summary>
public sealed class FakeEbsDirect(string accessKey, string secretKey)
{
    public const int BlockSize = 512 * 1024;

    /// <summary>Most blocks per ListSnapshotBlocks page (small, so paging is exercised).</summary>
    public int PageLimit { get; set; } = 64;

    /// <summary>Snapshot id -> raw disk image served for it.</summary>
    public Dictionary<string, string> Disks { get; } = [];

    /// <summary>When set, this block index is served with one byte flipped (its checksum then does not match).</summary>
    public int? CorruptBlock { get; set; }

    /// <summary>GetSnapshotBlock calls served.</summary>
    public int BlocksServed;

    private readonly string _tokenKey = Convert.ToHexString(RandomNumberGenerator.GetBytes(16));

    private string Token(string snapshot, long index)
        => Convert.ToBase64String(HMACSHA256.HashData(Encoding.UTF8.GetBytes(_tokenKey), Encoding.UTF8.GetBytes($"{snapshot}/{index}")))[..30] + "+/=";

    /// <summary>Answers one request under /snapshots/; returns (status, content type, body, extra headers, operation).</summary>
    public (int Status, string ContentType, byte[] Body, Dictionary<string, string> Headers, string Operation) Handle(HttpListenerRequest request)
    {
        var headers = new Dictionary<string, string>();
        string[] parts = request.Url!.AbsolutePath.Trim('/').Split('/');
        string operation = parts.Length == 4 ? "GetSnapshotBlock" : "ListSnapshotBlocks";
        if (SignatureProblem(request) is { } problem)
        {
            return (403, "application/json", Json(new JsonObject { ["Message"] = problem }), headers, operation);
        }
        if (parts.Length < 3 || parts[0] != "snapshots" || parts[2] != "blocks" || !Disks.TryGetValue(parts[1], out string? disk))
        {
            return (404, "application/json", Json(new JsonObject { ["Message"] = "The snapshot does not exist.", ["Reason"] = "SNAPSHOT_NOT_FOUND" }), headers, operation);
        }
        using var file = File.OpenRead(disk);
        long blocks = (file.Length + BlockSize - 1) / BlockSize;
        if (parts.Length == 3)
        {
            long start = request.QueryString["pageToken"] is { } page ? long.Parse(page, CultureInfo.InvariantCulture) : 0;
            int max = Math.Min(PageLimit, int.Parse(request.QueryString["maxResults"] ?? "10000", CultureInfo.InvariantCulture));
            var list = new JsonArray();
            byte[] buffer = new byte[BlockSize];
            long index = start;
            for (; index < blocks && list.Count < max; index++)
            {
                file.Position = index * BlockSize;
                int read = file.ReadAtLeast(buffer, BlockSize, throwOnEndOfStream: false);
                if (buffer.AsSpan(0, read).ContainsAnyExcept((byte)0))
                {
                    list.Add(new JsonObject { ["BlockIndex"] = index, ["BlockToken"] = Token(parts[1], index) });
                }
            }
            var body = new JsonObject
            {
                ["Blocks"] = list, ["BlockSize"] = BlockSize, ["VolumeSize"] = (file.Length + (1L << 30) - 1) >> 30,
                ["ExpiryTime"] = DateTimeOffset.UtcNow.AddMinutes(10).ToUnixTimeSeconds(),
            };
            if (index < blocks)
            {
                body["NextToken"] = index.ToString(CultureInfo.InvariantCulture);
            }
            return (200, "application/json", Json(body), headers, operation);
        }
        long blockIndex = long.Parse(parts[3], CultureInfo.InvariantCulture);
        if (request.QueryString["blockToken"] != Token(parts[1], blockIndex))
        {
            return (400, "application/json", Json(new JsonObject { ["Message"] = "The block token is not valid.", ["Reason"] = "INVALID_BLOCK_TOKEN" }), headers, operation);
        }
        byte[] data = new byte[BlockSize];
        file.Position = blockIndex * BlockSize;
        file.ReadAtLeast(data, BlockSize, throwOnEndOfStream: false);
        headers["x-amz-Checksum"] = Convert.ToBase64String(SHA256.HashData(data));
        headers["x-amz-Checksum-Algorithm"] = "SHA256";
        headers["x-amz-Data-Length"] = BlockSize.ToString(CultureInfo.InvariantCulture);
        if (CorruptBlock == blockIndex)
        {
            data[100] ^= 0xFF;
        }
        Interlocked.Increment(ref BlocksServed);
        return (200, "application/octet-stream", data, headers, operation);
    }

    /// <summary>Recomputes the request's SigV4 signature (GET, empty body); null when it matches.</summary>
    private string? SignatureProblem(HttpListenerRequest request)
    {
        string authorization = request.Headers["Authorization"] ?? "";
        var match = System.Text.RegularExpressions.Regex.Match(authorization, "^AWS4-HMAC-SHA256 Credential=([^/]+)/([0-9]{8})/([^/]+)/ebs/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$");
        if (!match.Success || match.Groups[1].Value != accessKey)
        {
            return $"not a SigV4 authorization for ebs with {accessKey}: {authorization}";
        }
        string date = request.Headers["x-amz-date"] ?? "";
        string[] signed = match.Groups[4].Value.Split(';');
        if (!signed.Contains("host") || !signed.Contains("x-amz-date") || !date.StartsWith(match.Groups[2].Value, StringComparison.Ordinal))
        {
            return "host and x-amz-date must be signed";
        }
        string query = string.Join("&", request.QueryString.AllKeys.Order(StringComparer.Ordinal)
            .Select(k => $"{Uri.EscapeDataString(k!)}={Uri.EscapeDataString(request.QueryString[k]!)}"));
        string canonicalHeaders = string.Concat(signed.Select(h => $"{h}:{(h == "host" ? request.Url!.Authority : request.Headers[h]?.Trim())}\n"));
        string payload = request.Headers["x-amz-content-sha256"] ?? Convert.ToHexStringLower(SHA256.HashData([]));
        string canonical = string.Join("\n", "GET", request.Url!.AbsolutePath, query, canonicalHeaders, match.Groups[4].Value, payload);
        string scope = $"{match.Groups[2].Value}/{match.Groups[3].Value}/ebs/aws4_request";
        string toSign = string.Join("\n", "AWS4-HMAC-SHA256", date, scope, Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(canonical))));
        byte[] key = Encoding.UTF8.GetBytes("AWS4" + secretKey);
        foreach (string part in new[] { match.Groups[2].Value, match.Groups[3].Value, "ebs", "aws4_request" })
        {
            key = HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(part));
        }
        string expected = Convert.ToHexStringLower(HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(toSign)));
        return expected == match.Groups[5].Value ? null : $"The request signature we calculated does not match the signature you provided (canonical request: {canonical.Replace("\n", "\\n")})";
    }

    private static byte[] Json(JsonObject body) => Encoding.UTF8.GetBytes(body.ToJsonString());
}
