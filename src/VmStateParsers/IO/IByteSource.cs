namespace CloudMem.VmStateParsers.IO;

/// <summary>Random access to the bytes of a capture file (or of a file reassembled from a stream format).</summary>
/// <remarks>Safe for concurrent readers.</remarks>
internal interface IByteSource : IDisposable
{
    /// <summary>Where the bytes come from: a local path, or a remote URL without credentials or signatures.</summary>
    string Path { get; }

    /// <summary>Length in bytes.</summary>
    long Length { get; }

    /// <summary>Copies bytes at <paramref name="offset"/>; returns the count copied (short at the end or at a gap).</summary>
    int Read(long offset, Span<byte> destination);

    /// <summary>Zero-copy view when the bytes are stored contiguously; false otherwise.</summary>
    bool TryGetSpan(long offset, int length, out ReadOnlySpan<byte> span);

    /// <summary>
    /// Zero-copy view for a sequential scan that releases what it read behind it (<see cref="ReleaseResident"/>): a
    /// mapped file may serve it from a mapping laid out for huge pages. Defaults to <see cref="TryGetSpan"/>.
    /// </summary>
    bool TryGetScanSpan(long offset, int length, out ReadOnlySpan<byte> span) => TryGetSpan(offset, length, out span);

    /// <summary>Drops resident pages of the given file range from this process (a hint; may do nothing).</summary>
    void ReleaseResident(long offset, long length);
}

/// <summary>Header reads for parsers that work on any <see cref="IByteSource"/>, mapped or remote.</summary>
internal static class ByteSourceExtensions
{
    /// <summary>
    /// <paramref name="length"/> bytes at <paramref name="offset"/>: a zero-copy view when the source can give one
    /// (a mapped file), otherwise a copy. Empty when the range is not wholly inside the source or could not be read
    /// (a remote source's failure is then in its stats), so bounded readers report it as a truncated structure.
    /// </summary>
    public static ReadOnlySpan<byte> Span(this IByteSource source, long offset, int length)
    {
        if (offset < 0 || length < 0 || offset > source.Length - length)
        {
            return ReadOnlySpan<byte>.Empty;
        }
        if (source.TryGetSpan(offset, length, out ReadOnlySpan<byte> span))
        {
            return span;
        }
        byte[] copy = GC.AllocateUninitializedArray<byte>(length);
        return source.Read(offset, copy) == length ? copy : ReadOnlySpan<byte>.Empty;
    }
}
