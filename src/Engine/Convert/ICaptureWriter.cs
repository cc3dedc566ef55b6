using System.Security.Cryptography;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Convert;

/// <summary>
/// Writes physical memory in one file format. Writers only write: the <see cref="CaptureConverter"/> owns the
/// never-overwrite rule, the temporary directory, verification through our own reader and the final rename.
/// </summary>
public interface ICaptureWriter
{
    /// <summary>The name used with <c>--to</c>, e.g. "raw".</summary>
    string Name { get; }

    /// <summary>One line for help text.</summary>
    string Description { get; }

    /// <summary>Variants accepted with <c>--variant</c> (empty when there are none); the first is the default.</summary>
    IReadOnlyList<string> Variants => [];

    /// <summary>The reader format to verify the output with (<see cref="CaptureOpener.FormatNames"/>), or null to detect it.</summary>
    string? VerifyAs => null;

    /// <summary>Writes <paramref name="memory"/> into files created through <paramref name="context"/>.</summary>
    WriterStatistics Write(IPhysicalMemory memory, WriterContext context);
}

/// <summary>What a writer reports back.</summary>
/// <param name="Records">Runs, records or blocks written (format-specific unit).</param>
/// <param name="UnreadableBytes">Captured bytes that could not be read from the source and were written as zero.</param>
public readonly record struct WriterStatistics(int Records, ulong UnreadableBytes);

/// <summary>Where a writer puts its files and how it reports progress.</summary>
public sealed class WriterContext
{
    private readonly List<OutputFile> _files = [];
    private readonly IProgress<ConvertProgress>? _progress;

    internal WriterContext(string directory, string mainName, string? variant, ulong totalBytes, IProgress<ConvertProgress>? progress, CancellationToken cancellationToken)
    {
        Directory = directory;
        MainName = mainName;
        Variant = variant;
        TotalBytes = totalBytes;
        _progress = progress;
        CancellationToken = cancellationToken;
    }

    /// <summary>The (temporary) directory files are created in.</summary>
    public string Directory { get; }

    /// <summary>File name of the main output (what the user passed to <c>--out</c>).</summary>
    public string MainName { get; }

    /// <summary>The requested variant, or null for the default.</summary>
    public string? Variant { get; }

    /// <summary>Captured bytes of the source.</summary>
    public ulong TotalBytes { get; }

    /// <summary>Cancellation.</summary>
    public CancellationToken CancellationToken { get; }

    /// <summary>Files created so far (the first is the main output).</summary>
    public IReadOnlyList<OutputFile> Files => _files;

    /// <summary>Creates the main output file.</summary>
    public OutputFile CreateMain() => Create(MainName);

    /// <summary>Creates a file named <paramref name="fileName"/> (a companion such as NAME.vmem) beside the main output.</summary>
    public OutputFile Create(string fileName)
    {
        if (fileName.Contains('/') || fileName.Contains('\\') || _files.Any(f => f.Name == fileName))
        {
            throw new ArgumentException($"bad or duplicate output file name '{fileName}'", nameof(fileName));
        }
        var file = new OutputFile(Path.Combine(Directory, fileName));
        _files.Add(file);
        return file;
    }

    /// <summary>Things the user should know about the output (a header field that could not be filled, padding added).</summary>
    public List<string> Notes { get; } = [];

    /// <summary>Reports bytes of memory written so far.</summary>
    public void ReportWritten(ulong done) => _progress?.Report(new ConvertProgress("write", done, TotalBytes));
}

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
