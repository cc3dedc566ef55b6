namespace CloudMem.VmStateParsers.Remote;

/// <summary>
/// A remote object (an S3 object, a blob, an HTTP resource) read by byte ranges. The transport behind it (an SDK
/// client with its own retry policy, or an HTTP client with a resilience pipeline) is the implementation's business;
/// <see cref="CaptureOpener.Open(IRangeReader, RemoteReadOptions?, ParserLimits?, string?)"/> puts a bounded block cache in
/// front of it so a capture is parsed and analysed in place, never downloaded first.
/// </summary>
/// <remarks>Implementations are safe for concurrent <see cref="ReadAsync"/> calls.</remarks>
public interface IRangeReader : IDisposable
{
    /// <summary>The object's address for messages: a URL without credentials, query string or signature.</summary>
    string DisplayName { get; }

    /// <summary>The object's length in bytes (known when the reader was opened).</summary>
    long Length { get; }

    /// <summary>
    /// Reads <paramref name="destination"/>.Length bytes at <paramref name="offset"/>; fewer only at the end of the
    /// object. Transient failures are retried by the transport's own policy before this returns.
    /// </summary>
    /// <exception cref="RemoteReadException">the range could not be read after the transport's retries.</exception>
    ValueTask<int> ReadAsync(long offset, Memory<byte> destination, CancellationToken cancellationToken);
}

/// <summary>A remote object could not be opened or read; the message is one line naming the object (never a credential).</summary>
public sealed class RemoteReadException : IOException
{
    /// <summary>Creates the exception.</summary>
    public RemoteReadException(string displayName, string operation, string problem, Exception? inner = null)
        : base($"{displayName}: {operation}: {problem}", inner)
    {
        DisplayName = displayName;
        Operation = operation;
        Problem = problem;
    }

    /// <summary>The object.</summary>
    public string DisplayName { get; }

    /// <summary>What was being done, e.g. "GetObject bytes=0-65535".</summary>
    public string Operation { get; }

    /// <summary>What went wrong, in plain words.</summary>
    public string Problem { get; }
}
