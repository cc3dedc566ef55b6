using CloudMem.VmStateParsers.Formats.Avml;
using CloudMem.VmStateParsers.Formats.CrashDump;
using CloudMem.VmStateParsers.Formats.Elf;
using CloudMem.VmStateParsers.Formats.Hibernation;
using CloudMem.VmStateParsers.Formats.HyperV;
using CloudMem.VmStateParsers.Formats.Kdump;
using CloudMem.VmStateParsers.Formats.Lime;
using CloudMem.VmStateParsers.Formats.Raw;
using CloudMem.VmStateParsers.Formats.Vmware;
using CloudMem.VmStateParsers.Formats.Swsusp;
using CloudMem.VmStateParsers.IO;
using CloudMem.VmStateParsers.Remote;

namespace CloudMem.VmStateParsers;

/// <summary>
/// Opens a capture file: tries each format's content probe in a declared order (never the file extension),
/// parses the first match into a run table and returns one <see cref="RunMappedMemory"/> over the file, mapped
/// read-only in place.
/// </summary>
public static class CaptureOpener
{
    // Declared detection order: formats with a magic first; then headerless files described by a companion
    // (a .vmem with a VMware state file beside it); raw (no header) last.
    private static readonly CaptureFormat[] s_formats =
    [
        new CrashDumpFormat(),
        new KdumpFormat(),
        new FlattenedKdumpFormat(),
        new ElfFormat(),
        new LimeFormat(),
        new AvmlFormat(),
        new HibernationFormat(),
        new HyperVFormat(),
        new VmwareFormat(),
        new VmemFormat(),
        new SwsuspFormat(),
        new RawFormat(),
    ];

    /// <summary>Short names of the formats in detection order.</summary>
    public static IReadOnlyList<string> FormatNames => Array.ConvertAll(s_formats, f => f.Name);

    /// <summary>Opens <paramref name="path"/>.</summary>
    /// <exception cref="DumpFormatException">The file is missing, unreadable, or not a valid capture; the message is one line naming the file, format, structure and offset.</exception>
    public static RunMappedMemory Open(string path, ParserLimits? limits = null)
    {
        if (TryOpen(path, out RunMappedMemory? memory, out FormatError? error, limits))
        {
            return memory!;
        }
        throw new DumpFormatException(path, error!);
    }

    /// <summary>Opens <paramref name="path"/> as the named format (see <see cref="FormatNames"/>), skipping detection.</summary>
    /// <exception cref="DumpFormatException">as for <see cref="Open(string, ParserLimits?)"/>.</exception>
    /// <exception cref="ArgumentException">the format name is unknown.</exception>
    public static RunMappedMemory OpenAs(string path, string formatName, ParserLimits? limits = null)
    {
        CaptureFormat format = Array.Find(s_formats, f => f.Name == formatName)
            ?? throw new DumpFormatException(path, new FormatError("--format", formatName, -1, $"unknown format (known: {string.Join(", ", FormatNames)})"));
        if (TryOpen(path, out RunMappedMemory? memory, out FormatError? error, limits, format))
        {
            return memory!;
        }
        throw new DumpFormatException(path, error!);
    }

    /// <summary>Opens <paramref name="path"/>, or says why not.</summary>
    public static bool TryOpen(string path, out RunMappedMemory? memory, out FormatError? error, ParserLimits? limits = null)
        => TryOpen(path, out memory, out error, limits, forced: null);

    private static bool TryOpen(string path, out RunMappedMemory? memory, out FormatError? error, ParserLimits? limits, CaptureFormat? forced)
    {
        memory = null;
        error = CheckFile(path);
        if (error is not null)
        {
            return false;
        }
        MappedFile file;
        try
        {
            file = MappedFile.Open(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            error = new FormatError("file", "open", -1, e is UnauthorizedAccessException ? "permission denied" : e.Message);
            return false;
        }
        return TryParse(file, path, limits ?? ParserLimits.Default, forced, CaptureFormat.ProbeBytes, out memory, out error);
    }

    /// <summary>
    /// Opens a remote capture in place: the object is read through a bounded block cache (<paramref name="options"/>)
    /// in ranged requests; only what the probe, the parser and later the analysis touch is fetched.
    /// </summary>
    /// <param name="reader">The object; owned by the returned memory (and disposed on failure).</param>
    /// <param name="options">Cache and fetch settings; <see cref="RemoteReadOptions.Default"/> when null.</param>
    /// <param name="limits">Parser limits.</param>
    /// <param name="formatName">A format to read it as (see <see cref="FormatNames"/>), skipping detection; null to detect.</param>
    /// <exception cref="DumpFormatException">not a valid capture, or its structures could not be fetched; the message is one
    /// line naming the object's <see cref="IRangeReader.DisplayName"/>, the format, structure and offset.</exception>
    /// <exception cref="ArgumentException">the format name is unknown.</exception>
    public static RunMappedMemory Open(IRangeReader reader, RemoteReadOptions? options = null, ParserLimits? limits = null, string? formatName = null)
    {
        CaptureFormat? forced = formatName is null ? null : Array.Find(s_formats, f => f.Name == formatName);
        if (formatName is not null && forced is null)
        {
            reader.Dispose();
            throw new ArgumentException($"unknown format '{formatName}' (known: {string.Join(", ", FormatNames)})", nameof(formatName));
        }
        if (reader.Length <= 0)
        {
            reader.Dispose();
            throw new DumpFormatException(reader.DisplayName, new FormatError("object", "length", -1, "the object is empty (0 bytes)"));
        }
        var source = new Remote.BlockCacheSource(reader, options ?? RemoteReadOptions.Default);
        // A remote probe first looks at a small head (most formats have their magic in the first bytes); only a capture
        // that nothing but the headerless raw format claims is probed again over the whole probe window.
        if (TryParse(source, reader.DisplayName, limits ?? ParserLimits.Default, forced, RemoteProbeBytes, out RunMappedMemory? memory, out FormatError? error))
        {
            memory!.RemoteStats = source.Stats;
            return memory;
        }
        throw new DumpFormatException(reader.DisplayName, error!);
    }

    /// <summary>Bytes of a remote object's head the first probe round sees.</summary>
    private const int RemoteProbeBytes = 16 * 1024;

    /// <summary>Probes (unless <paramref name="forced"/>) and parses <paramref name="file"/>; disposes it on failure.</summary>
    private static bool TryParse(IByteSource file, string path, ParserLimits limits, CaptureFormat? forced, int probeBytes, out RunMappedMemory? memory, out FormatError? error)
    {
        memory = null;
        error = null;
        CaptureFormat? format = forced;
        try
        {
            format ??= Detect(file, path, probeBytes);
            if (format is RawFormat && probeBytes < CaptureFormat.ProbeBytes && file.Length > probeBytes)
            {
                format = Detect(file, path, CaptureFormat.ProbeBytes);
            }
            ParsedCapture parsed = format.Parse(file, limits);
            string description = $"{parsed.Metadata.Format}: {Path.GetFileName(path)}";
            memory = new RunMappedMemory(description, parsed.Source, parsed.Runs, parsed.Decoder, parsed.Metadata, limits);
            return true;
        }
        catch (FormatErrorException e)
        {
            error = FetchFailure(file, format) ?? e.Error;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or OutOfMemoryException)
        {
            error = new FormatError(format?.Name ?? "file", "read", -1, e.Message);
        }
        file.Dispose();
        return false;
    }

    /// <summary>The short name of the format the content probes pick for <paramref name="path"/> (what <see cref="Open(string, ParserLimits?)"/> would parse it as).</summary>
    internal static string Detect(string path)
    {
        using MappedFile file = MappedFile.Open(path);
        return Detect(file, path, CaptureFormat.ProbeBytes).Name;
    }

    /// <summary>The first format, in the declared order, whose probe does not say NoMatch (raw matches anything).</summary>
    private static CaptureFormat Detect(IByteSource file, string path, int probeBytes)
    {
        int length = (int)Math.Min(file.Length, probeBytes);
        ReadOnlySpan<byte> head = file.Span(0, length);
        if (head.Length != length)
        {
            throw Fail.At("file", "head", 0, $"the first {length} bytes could not be read");
        }
        foreach (CaptureFormat candidate in s_formats)
        {
            if (candidate.Probe(head, file.Length, path) != FormatProbeResult.NoMatch)
            {
                return candidate;
            }
        }
        return s_formats[^1];
    }

    /// <summary>A remote fetch that failed while parsing explains a "truncated" structure better than the structure does.</summary>
    private static FormatError? FetchFailure(IByteSource file, CaptureFormat? format)
        => file is Remote.BlockCacheSource { Stats: { Failures: > 0, LastFailure: { } problem } }
            ? new FormatError(format?.Name ?? "object", "fetch", -1, problem)
            : null;

    private static FormatError? CheckFile(string path)
    {
        if (Directory.Exists(path))
        {
            return new FormatError("file", "open", -1, "is a directory, not a capture file");
        }
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            return new FormatError("file", "open", -1, "no such file");
        }
        if (info.Length == 0)
        {
            // Devices, pipes and sockets also report a length of 0: say which it is where the path shows it.
            string real = (info.ResolveLinkTarget(returnFinalTarget: true) ?? info).FullName;
            return new FormatError("file", "open", -1,
                real.StartsWith("/dev/", StringComparison.Ordinal) || real.StartsWith("/proc/", StringComparison.Ordinal) || real.StartsWith("/sys/", StringComparison.Ordinal)
                    ? $"{real} is a device or kernel file, not a capture file (capture memory with a tool such as AVML or LiME, then open the file it writes)"
                    : "the file is empty (0 bytes), or is a pipe or socket rather than a regular file");
        }
        return null;
    }
}
