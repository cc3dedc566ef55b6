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
    /// <exception cref="DumpFormatException">as for <see cref="Open"/>.</exception>
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
        limits ??= ParserLimits.Default;
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
        CaptureFormat? format = forced;
        try
        {
            format ??= Detect(file, path);
            ParsedCapture parsed = format.Parse(file, limits);
            string description = $"{parsed.Metadata.Format}: {Path.GetFileName(path)}";
            memory = new RunMappedMemory(description, parsed.Source, parsed.Runs, parsed.Decoder, parsed.Metadata, limits);
            return true;
        }
        catch (FormatErrorException e)
        {
            file.Dispose();
            error = e.Error;
            return false;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or OutOfMemoryException)
        {
            file.Dispose();
            error = new FormatError(format?.Name ?? "file", "read", -1, e.Message);
            return false;
        }
    }

    /// <summary>The short name of the format the content probes pick for <paramref name="path"/> (what <see cref="Open"/> would parse it as).</summary>
    internal static string Detect(string path)
    {
        using MappedFile file = MappedFile.Open(path);
        return Detect(file, path).Name;
    }

    /// <summary>The first format, in the declared order, whose probe does not say NoMatch (raw matches anything).</summary>
    private static CaptureFormat Detect(MappedFile file, string path)
    {
        ReadOnlySpan<byte> head = file.Span(0, (int)Math.Min(file.Length, CaptureFormat.ProbeBytes));
        foreach (CaptureFormat candidate in s_formats)
        {
            if (candidate.Probe(head, file.Length, path) != FormatProbeResult.NoMatch)
            {
                return candidate;
            }
        }
        return s_formats[^1];
    }

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
