namespace CloudMem.VmStateParsers.IO;

/// <summary>Random access to the bytes of a capture file (or of a file reassembled from a stream format).</summary>
/// <remarks>Safe for concurrent readers.</remarks>
internal interface IByteSource : IDisposable
{
    /// <summary>Length in bytes.</summary>
    long Length { get; }

    /// <summary>Copies bytes at <paramref name="offset"/>; returns the count copied (short at the end or at a gap).</summary>
    int Read(long offset, Span<byte> destination);

    /// <summary>Zero-copy view when the bytes are stored contiguously; false otherwise.</summary>
    bool TryGetSpan(long offset, int length, out ReadOnlySpan<byte> span);

    /// <summary>Drops resident pages of the given file range from this process (a hint; may do nothing).</summary>
    void ReleaseResident(long offset, long length);
}
