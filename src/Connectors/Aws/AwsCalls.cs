using Amazon.Runtime;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Aws;

/// <summary>
/// Runs SDK calls at the connector boundary: records every request id (success or service error) and turns
/// <see cref="AmazonServiceException"/> into a one-line <see cref="CaptureException"/>. Adds no retry (the SDK's
/// standard retry mode already retries).
/// </summary>
internal sealed class AwsCalls
{
    private readonly CustodyRecorder? _recorder;

    public AwsCalls(CustodyRecorder? recorder) => _recorder = recorder;

    public async Task<T> Run<T>(string service, string operation, Func<CancellationToken, Task<T>> call, CancellationToken cancellationToken)
        where T : AmazonWebServiceResponse
    {
        try
        {
            T response = await call(cancellationToken).ConfigureAwait(false);
            _recorder?.RequestId(service, operation, response.ResponseMetadata?.RequestId);
            return response;
        }
        catch (AmazonServiceException e)
        {
            _recorder?.RequestId(service, operation, e.RequestId);
            throw new CaptureException($"{service} {operation} failed: {e.ErrorCode ?? e.GetType().Name}: {e.Message} (HTTP {(int)e.StatusCode}, request id {e.RequestId ?? "none"})", e);
        }
        catch (AmazonClientException e)
        {
            throw new CaptureException($"{service} {operation} failed: {e.Message}", e);
        }
    }

    /// <summary>Like <see cref="Run{T}"/> but a service error with one of <paramref name="expectedCodes"/> returns null.</summary>
    public async Task<T?> TryRun<T>(string service, string operation, Func<CancellationToken, Task<T>> call, CancellationToken cancellationToken, params string[] expectedCodes)
        where T : AmazonWebServiceResponse
    {
        try
        {
            return await Run(service, operation, call, cancellationToken).ConfigureAwait(false);
        }
        catch (CaptureException e) when (e.InnerException is AmazonServiceException s && (expectedCodes.Contains(s.ErrorCode) || expectedCodes.Contains(((int)s.StatusCode).ToString(System.Globalization.CultureInfo.InvariantCulture))))
        {
            return null;
        }
    }

    public void Note(string service, string operation, string? requestId) => _recorder?.RequestId(service, operation, requestId);
}
