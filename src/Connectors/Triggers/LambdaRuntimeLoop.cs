using System.Globalization;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Triggers;

/// <summary>One invocation handed out by the Lambda Runtime API.</summary>
/// <remarks><see cref="Payload"/> is null when the event was over <see cref="TriggerLimits.MaxEventBytes"/>.</remarks>
public sealed record LambdaInvocation(string RequestId, DateTimeOffset? Deadline, byte[]? Payload);

/// <summary>
/// An AWS Lambda custom runtime (provided.al2023): the Runtime API loop over HttpClient (no Lambda package).
/// GET {base}/2018-06-01/runtime/invocation/next blocks until an event arrives (headers Lambda-Runtime-Aws-Request-Id,
/// Lambda-Runtime-Deadline-Ms); the handler's JSON goes to POST .../invocation/{id}/response, an exception to
/// POST .../invocation/{id}/error ({"errorMessage","errorType"} and Lambda-Runtime-Function-Error-Type), and the loop
/// asks for the next event. A failure before the loop (configuration) goes to POST .../runtime/init/error.
/// </summary>
public sealed class LambdaRuntimeLoop
{
    private const string Version = "2018-06-01";
    private readonly HttpClient _http;
    private readonly Uri _base;
    private readonly CaptureLog _log;

    /// <summary>Creates the loop; <paramref name="runtimeApi"/> is AWS_LAMBDA_RUNTIME_API ("host:port").</summary>
    public LambdaRuntimeLoop(HttpClient http, string runtimeApi, CaptureLog log)
    {
        if (string.IsNullOrWhiteSpace(runtimeApi) || runtimeApi.Contains('/', StringComparison.Ordinal))
        {
            throw new CaptureException($"AWS_LAMBDA_RUNTIME_API '{runtimeApi}' is not host:port (is this running inside Lambda?)");
        }
        _http = http;
        _base = new Uri($"http://{runtimeApi}/{Version}/runtime/");
        _log = log;
    }

    /// <summary>Reports an initialisation error (the function cannot start).</summary>
    public async Task ReportInitErrorAsync(Exception error, CancellationToken cancellationToken)
    {
        using HttpResponseMessage response = await _http.SendAsync(ErrorRequest(new Uri(_base, "init/error"), error), cancellationToken).ConfigureAwait(false);
        _log.Warn($"init error reported ({(int)response.StatusCode}): {error.Message}");
    }

    /// <summary>
    /// Serves invocations until cancelled (or <paramref name="maxInvocations"/> were handled). The handler returns
    /// the response JSON; any exception it throws becomes the invocation's error and the loop goes on.
    /// </summary>
    public async Task<int> RunAsync(Func<LambdaInvocation, CancellationToken, Task<string>> handler, int? maxInvocations, CancellationToken cancellationToken)
    {
        int handled = 0;
        while (maxInvocations is null || handled < maxInvocations)
        {
            LambdaInvocation invocation = await NextAsync(cancellationToken).ConfigureAwait(false);
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            if (invocation.Deadline is { } at)
            {
                // Keep a few seconds to post the outcome before Lambda stops the sandbox.
                TimeSpan left = at - DateTimeOffset.UtcNow - TimeSpan.FromSeconds(5);
                deadline.CancelAfter(left <= TimeSpan.Zero ? TimeSpan.FromSeconds(1) : left > TimeSpan.FromDays(1) ? TimeSpan.FromDays(1) : left);
            }
            HttpRequestMessage post;
            try
            {
                string json = invocation.Payload is null
                    ? throw new TriggerEventException("$", $"event is over the {TriggerLimits.MaxEventBytes}-byte limit")
                    : await handler(invocation, deadline.Token).ConfigureAwait(false);
                post = new HttpRequestMessage(HttpMethod.Post, new Uri(_base, $"invocation/{Uri.EscapeDataString(invocation.RequestId)}/response"))
                {
                    Content = new StringContent(json, Encoding.UTF8, "application/json"),
                };
                _log.Info($"invocation {invocation.RequestId}: done");
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                Exception reported = e is OperationCanceledException ? new CaptureException("the invocation's deadline passed before the capture finished", e) : e;
                _log.Warn($"invocation {invocation.RequestId}: error: {reported.Message}");
                post = ErrorRequest(new Uri(_base, $"invocation/{Uri.EscapeDataString(invocation.RequestId)}/error"), reported);
            }
            using (post)
            using (HttpResponseMessage posted = await _http.SendAsync(post, cancellationToken).ConfigureAwait(false))
            {
                if (!posted.IsSuccessStatusCode)
                {
                    _log.Warn($"invocation {invocation.RequestId}: the Runtime API answered {(int)posted.StatusCode} to our outcome");
                }
            }
            handled++;
        }
        return handled;
    }

    /// <summary>Waits for the next invocation (no client timeout: the call blocks until an event arrives).</summary>
    public async Task<LambdaInvocation> NextAsync(CancellationToken cancellationToken)
    {
        using HttpResponseMessage response = await _http.GetAsync(new Uri(_base, "invocation/next"), HttpCompletionOption.ResponseHeadersRead, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new CaptureException($"Runtime API invocation/next answered {(int)response.StatusCode} {response.ReasonPhrase}");
        }
        string requestId = Header(response.Headers, "Lambda-Runtime-Aws-Request-Id")
            ?? throw new CaptureException("Runtime API invocation/next gave no Lambda-Runtime-Aws-Request-Id header");
        DateTimeOffset? deadline = long.TryParse(Header(response.Headers, "Lambda-Runtime-Deadline-Ms"), NumberStyles.None, CultureInfo.InvariantCulture, out long ms)
            ? DateTimeOffset.FromUnixTimeMilliseconds(ms) : null;
        await using Stream body = await response.Content.ReadAsStreamAsync(cancellationToken).ConfigureAwait(false);
        byte[]? payload;
        try
        {
            payload = await AlertEventParser.ReadBoundedAsync(body, TriggerLimits.MaxEventBytes, cancellationToken).ConfigureAwait(false);
        }
        catch (TriggerEventException)
        {
            payload = null; // reported as this invocation's error
        }
        return new LambdaInvocation(requestId, deadline, payload);
    }

    private static string? Header(HttpResponseHeaders headers, string name)
        => headers.TryGetValues(name, out IEnumerable<string>? values) ? values.FirstOrDefault() : null;

    private static HttpRequestMessage ErrorRequest(Uri uri, Exception error)
    {
        string type = error switch
        {
            TriggerEventException => "CloudMem.EventError",
            CaptureTimeoutException => "CloudMem.CaptureTimeout",
            CaptureException => "CloudMem.CaptureError",
            _ => "CloudMem." + error.GetType().Name,
        };
        string body = JsonSerializer.Serialize(new Dictionary<string, object> { ["errorMessage"] = error.Message, ["errorType"] = type, ["stackTrace"] = Array.Empty<string>() });
        var request = new HttpRequestMessage(HttpMethod.Post, uri) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Add("Lambda-Runtime-Function-Error-Type", type);
        return request;
    }
}
