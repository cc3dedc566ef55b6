using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Triggers;

/// <summary>
/// An Azure Functions custom handler: an HTTP server on 127.0.0.1:FUNCTIONS_CUSTOMHANDLER_PORT. The Functions host
/// POSTs /{functionName} with {"Data": {binding: value}, "Metadata": {...}}; for an Event Grid trigger the value is
/// the event (object or JSON string), for an HTTP trigger it is the request ({"Body": ...}). We answer
/// {"Outputs": {"res": {"statusCode", "body"}}, "Logs": [...], "ReturnValue": outcome}. A malformed event is a
/// handled invocation (res 400, not retried); a failed capture answers HTTP 500 so the host records a failure.
/// Invocations run one at a time (a capture is long and heavy; the host queues the rest).
/// </summary>
public sealed class FunctionHandlerServer : IAsyncDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Func<ReadOnlyMemory<byte>, CancellationToken, Task<ResponseOutcome>> _respond;
    private readonly CaptureLog _log;

    /// <summary>Creates the server (not started).</summary>
    public FunctionHandlerServer(int port, Func<ReadOnlyMemory<byte>, CancellationToken, Task<ResponseOutcome>> respond, CaptureLog log)
    {
        if (port is <= 0 or > 65535)
        {
            throw new CaptureException($"FUNCTIONS_CUSTOMHANDLER_PORT {port} is not a TCP port");
        }
        Port = port;
        _respond = respond;
        _log = log;
        // The host may name us either way in the Host header (HttpListener matches on it); both are loopback only.
        _listener.Prefixes.Add($"http://127.0.0.1:{port}/");
        _listener.Prefixes.Add($"http://localhost:{port}/");
    }

    /// <summary>The port.</summary>
    public int Port { get; }

    /// <summary>Serves until cancelled.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        _listener.Start();
        _log.Info($"custom handler listening on 127.0.0.1:{Port}");
        using CancellationTokenRegistration stop = cancellationToken.Register(_listener.Stop);
        while (!cancellationToken.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync().ConfigureAwait(false);
            }
            catch (Exception) when (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            catch (HttpListenerException) when (!_listener.IsListening)
            {
                break;
            }
            await HandleAsync(context, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task HandleAsync(HttpListenerContext context, CancellationToken cancellationToken)
    {
        var logs = new List<string>();
        int status = 200;
        JsonNode? result;
        int resStatus;
        try
        {
            if (context.Request.HttpMethod != "POST")
            {
                throw new TriggerEventException("$", $"{context.Request.HttpMethod} {context.Request.Url?.AbsolutePath}: the host POSTs invocations");
            }
            byte[] body = await AlertEventParser.ReadBoundedAsync(context.Request.InputStream, TriggerLimits.MaxEventBytes, cancellationToken).ConfigureAwait(false);
            byte[] eventJson = ExtractEvent(body);
            ResponseOutcome outcome = await _respond(eventJson, cancellationToken).ConfigureAwait(false);
            logs.Add(outcome.Reason);
            result = JsonNode.Parse(outcome.ToJson());
            resStatus = outcome.Status switch
            {
                ResponseStatus.Refused or ResponseStatus.Planned or ResponseStatus.Duplicate => 200,
                ResponseStatus.Started => 202,
                _ => 201,
            };
        }
        catch (TriggerEventException e)
        {
            logs.Add(e.Message);
            _log.Warn(e.Message);
            result = JsonNode.Parse(new ResponseOutcome { Status = ResponseStatus.Failed, Reason = e.Message }.ToJson());
            resStatus = 400;
        }
        catch (Exception e)
        {
            // Whatever failed, the host gets an answer (an unanswered invocation would hang it until its timeout).
            string message = e switch
            {
                OperationCanceledException => "cancelled",
                CaptureException => e.Message,
                _ => $"{e.GetType().Name}: {e.Message}",
            };
            logs.Add(message);
            _log.Warn($"invocation failed: {message}");
            result = JsonNode.Parse(new ResponseOutcome { Status = ResponseStatus.Failed, Reason = message }.ToJson());
            resStatus = 500;
            status = 500;
        }
        var answer = new JsonObject
        {
            ["Outputs"] = new JsonObject
            {
                ["res"] = new JsonObject
                {
                    ["statusCode"] = resStatus,
                    ["headers"] = new JsonObject { ["Content-Type"] = "application/json" },
                    ["body"] = result?.ToJsonString(),
                },
            },
            ["Logs"] = new JsonArray([.. logs.Select(l => (JsonNode)JsonValue.Create(_log.Scrubber.Scrub(l)))]),
            ["ReturnValue"] = result,
        };
        byte[] bytes = Encoding.UTF8.GetBytes(answer.ToJsonString());
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength64 = bytes.Length;
        await context.Response.OutputStream.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
        context.Response.Close();
    }

    /// <summary>The event inside a custom-handler invocation ({"Data": {binding: event or HTTP request}}).</summary>
    /// <exception cref="TriggerEventException">no Data, or no binding value.</exception>
    public static byte[] ExtractEvent(byte[] invocation)
    {
        JsonNode? root;
        try
        {
            root = JsonNode.Parse(invocation, documentOptions: new JsonDocumentOptions { MaxDepth = TriggerLimits.MaxDepth });
        }
        catch (JsonException e)
        {
            throw new TriggerEventException("$", $"invocation is not valid JSON: {e.Message.Split('\n')[0]}", e);
        }
        if (root is not JsonObject invocationObject || Find(invocationObject, "Data") is not JsonObject data)
        {
            throw new TriggerEventException("$.Data", "missing (not a custom handler invocation)");
        }
        KeyValuePair<string, JsonNode?> binding = data.FirstOrDefault(p => p.Value is not null);
        if (binding.Value is null)
        {
            throw new TriggerEventException("$.Data", "no binding value");
        }
        JsonNode value = binding.Value;
        // HTTP trigger: the request object; its Body is the event (string or object).
        if (value is JsonObject request && Find(request, "Body") is { } body && (Find(request, "Method") is not null || Find(request, "Headers") is not null))
        {
            value = body;
        }
        if (value is JsonValue text && text.TryGetValue(out string? json))
        {
            return Encoding.UTF8.GetBytes(json);
        }
        return Encoding.UTF8.GetBytes(value.ToJsonString());
    }

    private static JsonNode? Find(JsonObject node, string name)
        => node.FirstOrDefault(p => string.Equals(p.Key, name, StringComparison.OrdinalIgnoreCase)).Value;

    /// <inheritdoc />
    public ValueTask DisposeAsync()
    {
        _listener.Close();
        return ValueTask.CompletedTask;
    }
}
