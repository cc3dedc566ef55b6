using System.Security.Cryptography;

namespace CloudMem.VmStateParsers.Writing;

/// <summary>
/// An output file written at ascending offsets. It hashes the file's bytes in order as it goes (zeros of skipped,
/// sparse ranges included), so the SHA-256 of a sparse file costs no second pass over its holes.
/// </summary>
public sealed class OutputFile : IDisposable
{
    private static readonly byte[] s_zeros = new byte[1 << 20];
    private readonly FileStream _stream;
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private long _hashed;
    private long _length;
    private string? _sha256;

    internal OutputFile(string path)
    {
        Path = path;
        _stream = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20);
    }

    /// <summary>Full path (in the temporary directory until the conversion completes).</summary>
    public string Path { get; }

    /// <summary>File name.</summary>
    public string Name => System.IO.Path.GetFileName(Path);

    /// <summary>The end of what was written or reserved so far.</summary>
    public long Length => _length;

    /// <summary>Where the next sequential write goes.</summary>
    public long Position => _hashed;

    /// <summary>SHA-256 (lower-case hex) once <see cref="Complete"/> ran.</summary>
    public string Sha256 => _sha256 ?? throw new InvalidOperationException("file not completed");

    /// <summary>Extends the file with zeros (sparse) to at least <paramref name="length"/>.</summary>
    public void Reserve(long length)
    {
        if (length > _length)
        {
            _stream.SetLength(length);
            _length = length;
        }
    }

    /// <summary>Appends at <see cref="Position"/>.</summary>
    public void Write(ReadOnlySpan<byte> data) => WriteAt(_hashed, data);

    /// <summary>Writes at <paramref name="offset"/>, which must not be below <see cref="Position"/>; the gap reads as zero.</summary>
    public void WriteAt(long offset, ReadOnlySpan<byte> data)
    {
        if (offset < _hashed)
        {
            throw new InvalidOperationException($"{Name}: writes must go forward (0x{offset:X} < 0x{_hashed:X})");
        }
        HashZerosTo(offset);
        _stream.Position = offset;
        _stream.Write(data);
        _hash.AppendData(data);
        _hashed = offset + data.Length;
        _length = Math.Max(_length, _hashed);
    }

    /// <summary>Finishes the hash and flushes the file to disk.</summary>
    public void Complete()
    {
        if (_sha256 is not null)
        {
            return;
        }
        HashZerosTo(_length);
        _sha256 = System.Convert.ToHexStringLower(_hash.GetHashAndReset());
        _stream.Flush(flushToDisk: true);
        _stream.Dispose();
    }

    private void HashZerosTo(long offset)
    {
        while (_hashed < offset)
        {
            int count = (int)Math.Min(s_zeros.Length, offset - _hashed);
            _hash.AppendData(s_zeros, 0, count);
            _hashed += count;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _stream.Dispose();
        _hash.Dispose();
    }
}
