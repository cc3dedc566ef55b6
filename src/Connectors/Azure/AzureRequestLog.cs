using System.Collections.Concurrent;
using Azure;
using Azure.Core;
using Azure.Core.Pipeline;

namespace CloudMem.Connectors.Azure;

/// <summary>One response from Azure as the manifest records it: never a header value other than the ids.</summary>
internal sealed record AzureRequestRecord(
    string Service, string Operation, int Status, string? RequestId, string? CorrelationId, DateTimeOffset Time);

/// <summary>
/// A pipeline policy (per retry, so every attempt is seen) that records x-ms-request-id and
/// x-ms-correlation-request-id of every response, with the method and path (no query: a SAS or api-version never
/// lands in the record). Thread-safe.
/// </summary>
internal sealed class AzureRequestLog : HttpPipelinePolicy
{
    private readonly ConcurrentQueue<AzureRequestRecord> _records = new();
    private readonly string _service;

    public AzureRequestLog(string service) => _service = service;

    /// <summary>What was recorded so far, in order of arrival.</summary>
    public IReadOnlyList<AzureRequestRecord> Records => _records.ToArray();

    public override void Process(HttpMessage message, ReadOnlyMemory<HttpPipelinePolicy> pipeline)
    {
        try
        {
            ProcessNext(message, pipeline);
        }
        finally
        {
            Record(message);
        }
    }

    public override async ValueTask ProcessAsync(HttpMessage message, ReadOnlyMemory<HttpPipelinePolicy> pipeline)
    {
        try
        {
            await ProcessNextAsync(message, pipeline).ConfigureAwait(false);
        }
        finally
        {
            Record(message);
        }
    }

    private void Record(HttpMessage message)
    {
        string path = message.Request.Uri.Path;
        string operation = $"{message.Request.Method} {(path.StartsWith('/') ? path : "/" + path)}";
        if (!message.HasResponse)
        {
            _records.Enqueue(new AzureRequestRecord(_service, operation, 0, null, null, DateTimeOffset.UtcNow));
            return;
        }
        Response response = message.Response;
        response.Headers.TryGetValue("x-ms-request-id", out string? requestId);
        response.Headers.TryGetValue("x-ms-correlation-request-id", out string? correlationId);
        _records.Enqueue(new AzureRequestRecord(_service, operation, response.Status, requestId, correlationId, DateTimeOffset.UtcNow));
    }
}
