namespace CloudMem.VmStateParsers.Writing;

/// <summary>Where a writer puts its files and how it reports progress.</summary>
public sealed class WriterContext
{
    private readonly List<OutputFile> _files = [];
    private readonly IProgress<ConvertProgress>? _progress;

    /// <summary>A context whose files go into <paramref name="directory"/> (which must exist); the converter owns that directory.</summary>
    public WriterContext(string directory, string mainName, string? variant, ulong totalBytes, IProgress<ConvertProgress>? progress, CancellationToken cancellationToken)
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
