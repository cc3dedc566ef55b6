using System.Collections.Concurrent;
using System.Net;
using System.Text;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Triggers;

/// <summary>What the runtime posted back for one invocation.</summary>
public sealed record LambdaOutcome(string RequestId, string Kind, string Body, string? ErrorType);

/// <summary>
/// A local Lambda Runtime API (2018-06-01) on 127.0.0.1: hands out queued events on GET invocation/next (with the
/// request id and deadline headers; blocks when the queue is empty) and records what comes back on
/// POST invocation/{id}/response|error and runtime/init/error.
/// </summary>
public sealed class FakeLambdaRuntime : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly BlockingCollection<(string Id, byte[] Payload)> _events = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    public FakeLambdaRuntime()
    {
        Port = Emulators.FreePort();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    public int Port { get; }

    /// <summary>AWS_LAMBDA_RUNTIME_API.</summary>
    public string Api => $"127.0.0.1:{Port}";

    public ConcurrentQueue<LambdaOutcome> Outcomes { get; } = new();

    public TimeSpan Deadline { get; set; } = TimeSpan.FromMinutes(5);

    public string Enqueue(byte[] payload)
    {
        string id = Guid.NewGuid().ToString();
        _events.Add((id, payload));
        return id;
    }

    public string Enqueue(string json) => Enqueue(Encoding.UTF8.GetBytes(json));

    private async Task ServeAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception) when (_stop.IsCancellationRequested)
            {
                return;
            }
            _ = Task.Run(() => HandleAsync(context));
        }
    }

    private async Task HandleAsync(HttpListenerContext context)
    {
        string path = context.Request.Url!.AbsolutePath;
        HttpListenerResponse response = context.Response;
        try
        {
            if (context.Request.HttpMethod == "GET" && path == "/2018-06-01/runtime/invocation/next")
            {
                (string id, byte[] payload) = _events.Take(_stop.Token);
                response.Headers["Lambda-Runtime-Aws-Request-Id"] = id;
                response.Headers["Lambda-Runtime-Deadline-Ms"] = DateTimeOffset.UtcNow.Add(Deadline).ToUnixTimeMilliseconds().ToString(System.Globalization.CultureInfo.InvariantCulture);
                response.Headers["Lambda-Runtime-Invoked-Function-Arn"] = "arn:aws:lambda:eu-west-1:210987654321:function:cloudmem-responder";
                response.ContentType = "application/json";
                await response.OutputStream.WriteAsync(payload);
                response.Close();
                return;
            }
            string body = await new StreamReader(context.Request.InputStream).ReadToEndAsync();
            string[] parts = path.Split('/', StringSplitOptions.RemoveEmptyEntries);
            if (context.Request.HttpMethod == "POST" && parts is ["2018-06-01", "runtime", "invocation", var requestId, "response" or "error"])
            {
                Outcomes.Enqueue(new LambdaOutcome(requestId, parts[4], body, context.Request.Headers["Lambda-Runtime-Function-Error-Type"]));
                response.StatusCode = 202;
            }
            else if (context.Request.HttpMethod == "POST" && path == "/2018-06-01/runtime/init/error")
            {
                Outcomes.Enqueue(new LambdaOutcome("", "init-error", body, context.Request.Headers["Lambda-Runtime-Function-Error-Type"]));
                response.StatusCode = 202;
            }
            else
            {
                response.StatusCode = 404;
            }
            response.Close();
        }
        catch (OperationCanceledException)
        {
            response.Abort();
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Close();
        try
        {
            _loop.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
    }
}
