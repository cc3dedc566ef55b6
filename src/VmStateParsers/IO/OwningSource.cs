namespace CloudMem.VmStateParsers.IO;

/// <summary>
/// Reads from one byte source and also owns other open files of the same capture (e.g. the .vmss whose tags
/// described the .vmem being read), disposing all of them together.
/// </summary>
/// <remarks>Safe for concurrent readers, as the inner source is.</remarks>
internal sealed class OwningSource(IByteSource data, params IDisposable[] alsoOwned) : IByteSource
{
    /// <inheritdoc />
    public string Path => data.Path;

    /// <inheritdoc />
    public long Length => data.Length;

    /// <inheritdoc />
    public int Read(long offset, Span<byte> destination) => data.Read(offset, destination);

    /// <inheritdoc />
    public bool TryGetSpan(long offset, int length, out ReadOnlySpan<byte> span) => data.TryGetSpan(offset, length, out span);

    /// <inheritdoc />
    public void ReleaseResident(long offset, long length) => data.ReleaseResident(offset, length);

    /// <inheritdoc />
    public void Dispose()
    {
        data.Dispose();
        foreach (IDisposable other in alsoOwned)
        {
            other.Dispose();
        }
    }
}
