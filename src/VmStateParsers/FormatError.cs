namespace CloudMem.VmStateParsers;

/// <summary>A structural problem found in a capture file, with where it was found.</summary>
/// <param name="Format">The format being parsed, e.g. "kdump".</param>
/// <param name="Structure">The structure or field, e.g. "page_desc[12].offset".</param>
/// <param name="FileOffset">File offset of the structure (-1 when the problem is not at one place).</param>
/// <param name="Problem">What is wrong, in plain words.</param>
public sealed record FormatError(string Format, string Structure, long FileOffset, string Problem)
{
    /// <summary>The one-line message, without the file name.</summary>
    public override string ToString()
        => FileOffset >= 0
            ? $"{Format} {Structure} at 0x{FileOffset:X}: {Problem}"
            : $"{Format} {Structure}: {Problem}";
}

/// <summary>Raised by <see cref="CaptureOpener.Open(string, ParserLimits?)"/> when a file cannot be read as a capture.
/// (A <see cref="FormatException"/>: <see cref="InvalidDataException"/> is sealed.)</summary>
public sealed class DumpFormatException : FormatException
{
    /// <summary>Creates the exception.</summary>
    public DumpFormatException(string path, FormatError error)
        : base($"{path}: {error}")
    {
        Path = path;
        Error = error;
    }

    /// <summary>The file.</summary>
    public string Path { get; }

    /// <summary>The structured error.</summary>
    public FormatError Error { get; }
}

/// <summary>Internal carrier that unwinds a parser to the facade; never escapes the library.</summary>
internal sealed class FormatErrorException(FormatError error) : Exception(error.ToString())
{
    public FormatError Error { get; } = error;
}
