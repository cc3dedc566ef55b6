using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Xml.Linq;
using Amazon.Runtime;
using CloudMem.Connectors.Core;
using Polly;

namespace CloudMem.Connectors.Aws;

/// <summary>One Auto Scaling instance as DescribeAutoScalingInstances reports it.</summary>
public sealed record AutoScalingInstance(string InstanceId, string GroupName, string LifecycleState);

/// <summary>A parsed Auto Scaling Query response: its request id and the body.</summary>
public sealed record AutoScalingResponse(string? RequestId, XElement Body);

/// <summary>
/// The two Auto Scaling calls isolation needs (DescribeAutoScalingInstances, EnterStandby) over the Query protocol,
/// signed with Signature Version 4 from the same SDK credentials. Our own HTTP, so transient failures are retried by
/// <see cref="Resilience.TransientHttp"/>.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class AutoScalingClient : IDisposable
{
    private const string Service = "autoscaling";
    private const string ApiVersion = "2011-01-01";
    private static readonly XNamespace s_ns = "http://autoscaling.amazonaws.com/doc/2011-01-01/";
    private readonly AWSCredentials _credentials;
    private readonly string _region;
    private readonly Uri _endpoint;
    private readonly HttpClient _http = new() { Timeout = TimeSpan.FromSeconds(60) };
    private readonly ResiliencePipeline<HttpResponseMessage> _retry = Resilience.TransientHttp();

    /// <summary>Creates the client for <paramref name="region"/> (or the given endpoint).</summary>
    public AutoScalingClient(AWSCredentials credentials, string region, string? serviceUrl)
    {
        _credentials = credentials;
        _region = region;
        _endpoint = new Uri(serviceUrl ?? $"https://autoscaling.{region}.amazonaws.com/");
    }

    /// <summary>The group the instance belongs to, or null.</summary>
    public async Task<(AutoScalingInstance? Instance, string? RequestId)> DescribeInstanceAsync(string instanceId, CancellationToken cancellationToken)
    {
        AutoScalingResponse response = await CallAsync("DescribeAutoScalingInstances", [new("InstanceIds.member.1", instanceId)], cancellationToken).ConfigureAwait(false);
        XElement? member = response.Body.Descendants(s_ns + "member").FirstOrDefault();
        AutoScalingInstance? instance = member is null ? null : new AutoScalingInstance(
            (string?)member.Element(s_ns + "InstanceId") ?? instanceId,
            (string?)member.Element(s_ns + "AutoScalingGroupName") ?? "",
            (string?)member.Element(s_ns + "LifecycleState") ?? "");
        return (instance, response.RequestId);
    }

    /// <summary>Moves the instance to Standby (the group stops health-replacing it); keeps the desired capacity unless told.</summary>
    public async Task<string?> EnterStandbyAsync(string groupName, string instanceId, bool decrementDesiredCapacity, CancellationToken cancellationToken)
    {
        AutoScalingResponse response = await CallAsync("EnterStandby",
        [
            new("AutoScalingGroupName", groupName),
            new("InstanceIds.member.1", instanceId),
            new("ShouldDecrementDesiredCapacity", decrementDesiredCapacity ? "true" : "false"),
        ], cancellationToken).ConfigureAwait(false);
        return response.RequestId;
    }

    private async Task<AutoScalingResponse> CallAsync(string action, KeyValuePair<string, string>[] parameters, CancellationToken cancellationToken)
    {
        string body = string.Join("&", new[] { new KeyValuePair<string, string>("Action", action), new("Version", ApiVersion) }
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
                throw new CaptureException($"autoscaling {action}: HTTP {(int)response.StatusCode} with a body that is not XML");
            }
            string? requestId = root.Descendants().FirstOrDefault(e => e.Name.LocalName == "RequestId")?.Value;
            if (!response.IsSuccessStatusCode)
            {
                string code = root.Descendants().FirstOrDefault(e => e.Name.LocalName == "Code")?.Value ?? ((int)response.StatusCode).ToString(CultureInfo.InvariantCulture);
                string message = root.Descendants().FirstOrDefault(e => e.Name.LocalName == "Message")?.Value ?? "";
                throw new CaptureException($"autoscaling {action} failed: {code}: {message} (request id {requestId ?? "none"})");
            }
            return new AutoScalingResponse(requestId, root);
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
        string scope = $"{date}/{_region}/{Service}/aws4_request";
        string toSign = string.Join("\n", "AWS4-HMAC-SHA256", amzDate, scope, Hex(SHA256.HashData(Encoding.UTF8.GetBytes(canonical))));
        byte[] key = Hmac(Encoding.UTF8.GetBytes("AWS4" + credentials.SecretKey), date);
        key = Hmac(key, _region);
        key = Hmac(key, Service);
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
