using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Xml.Linq;
using Amazon.Runtime;
using CloudMem.Connectors.Core;
using Polly;

namespace CloudMem.Connectors.Aws;

/// <summary>A parsed AWS Query-protocol response: its request id and the body.</summary>
public sealed record AwsQueryResponse(string? RequestId, XElement Body);

/// <summary>
/// A minimal AWS Query-protocol client (form-encoded POST to "/", XML answer) signed with Signature Version 4 from
/// the SDK's credentials, for services whose SDK package is not available to us (Auto Scaling, IAM). Our own HTTP, so
/// transient failures are retried by <see cref="Resilience.TransientHttp"/>; a service error is a
/// <see cref="CaptureException"/> naming the code, message and request id.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class AwsQueryClient : IDisposable
{
    private readonly AWSCredentials _credentials;
    private readonly string _service;
    private readonly string _version;
    private readonly string _region;
    private readonly Uri _endpoint;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(60) };
    private readonly ResiliencePipeline<HttpResponseMessage> _retry = Resilience.TransientHttp();

    /// <summary>Creates the client (<paramref name="region"/> is the signing region).</summary>
    public AwsQueryClient(AWSCredentials credentials, string service, string version, string region, Uri endpoint)
    {
        _credentials = credentials;
        _service = service;
        _version = version;
        _region = region;
        _endpoint = endpoint;
    }

    /// <summary>One action with its parameters.</summary>
    public async Task<AwsQueryResponse> CallAsync(string action, KeyValuePair<string, string>[] parameters, CancellationToken cancellationToken)
    {
        string body = string.Join("&", new[] { new KeyValuePair<string, string>("Action", action), new("Version", _version) }
            .Concat(parameters)
            .Select(p => $"{Uri.EscapeDataString(p.Key)}={Uri.EscapeDataString(p.Value)}"));
        ImmutableCredentials credentials = await _credentials.GetCredentialsAsync().ConfigureAwait(false);
        HttpResponseMessage response = await _retry.ExecuteAsync(async token =>
        {
            using HttpRequestMessage request = Sign(body, credentials, DateTime.UtcNow);
            return await _http.SendAsync(request, token).ConfigureAwait(false);
        }, cancellationToken).ConfigureAwait(false);
        using (response)
        {
            string text = await response.Content.ReadAsStringAsync(cancellationToken).ConfigureAwait(false);
            XElement root;
            try
            {
                root = XElement.Parse(text);
            }
            catch (System.Xml.XmlException)
            {
                throw new CaptureException($"{_service} {action}: HTTP {(int)response.StatusCode} with a body that is not XML");
            }
            string? requestId = root.Descendants().FirstOrDefault(e => e.Name.LocalName == "RequestId")?.Value;
            if (!response.IsSuccessStatusCode)
            {
                string code = root.Descendants().FirstOrDefault(e => e.Name.LocalName == "Code")?.Value ?? ((int)response.StatusCode).ToString(CultureInfo.InvariantCulture);
                string message = root.Descendants().FirstOrDefault(e => e.Name.LocalName == "Message")?.Value ?? "";
                throw new CaptureException($"{_service} {action} failed: {code}: {message} (request id {requestId ?? "none"})");
            }
            return new AwsQueryResponse(requestId, root);
        }
    }

    // Signature Version 4 for a form-encoded POST to "/".
    private HttpRequestMessage Sign(string body, ImmutableCredentials credentials, DateTime now)
    {
        string amzDate = now.ToString("yyyyMMdd'T'HHmmss'Z'", CultureInfo.InvariantCulture);
        string date = amzDate[..8];
        string host = _endpoint.IsDefaultPort ? _endpoint.Host : $"{_endpoint.Host}:{_endpoint.Port}";
        const string contentType = "application/x-www-form-urlencoded; charset=utf-8";
        var headers = new SortedDictionary<string, string>(StringComparer.Ordinal)
        {
            ["content-type"] = contentType,
            ["host"] = host,
            ["x-amz-date"] = amzDate,
        };
        if (credentials.UseToken)
        {
            headers["x-amz-security-token"] = credentials.Token;
        }
        string signedHeaders = string.Join(";", headers.Keys);
        string canonical = string.Join("\n",
            "POST",
            _endpoint.AbsolutePath.Length == 0 ? "/" : _endpoint.AbsolutePath,
            "",
            string.Concat(headers.Select(h => $"{h.Key}:{h.Value.Trim()}\n")),
            signedHeaders,
            Hex(SHA256.HashData(Encoding.UTF8.GetBytes(body))));
        string scope = $"{date}/{_region}/{_service}/aws4_request";
        string toSign = string.Join("\n", "AWS4-HMAC-SHA256", amzDate, scope, Hex(SHA256.HashData(Encoding.UTF8.GetBytes(canonical))));
        byte[] key = Hmac(Encoding.UTF8.GetBytes("AWS4" + credentials.SecretKey), date);
        key = Hmac(key, _region);
        key = Hmac(key, _service);
        key = Hmac(key, "aws4_request");
        string signature = Hex(Hmac(key, toSign));

        var request = new HttpRequestMessage(HttpMethod.Post, _endpoint)
        {
            Content = new StringContent(body, Encoding.UTF8),
        };
        request.Content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);
        request.Headers.TryAddWithoutValidation("X-Amz-Date", amzDate);
        if (credentials.UseToken)
        {
            request.Headers.TryAddWithoutValidation("X-Amz-Security-Token", credentials.Token);
        }
        request.Headers.TryAddWithoutValidation("Authorization",
            $"AWS4-HMAC-SHA256 Credential={credentials.AccessKey}/{scope}, SignedHeaders={signedHeaders}, Signature={signature}");
        return request;
    }

    private static byte[] Hmac(byte[] key, string data) => HMACSHA256.HashData(key, Encoding.UTF8.GetBytes(data));

    private static string Hex(byte[] bytes) => Convert.ToHexStringLower(bytes);

    /// <inheritdoc />
    public void Dispose() => _http.Dispose();
}
