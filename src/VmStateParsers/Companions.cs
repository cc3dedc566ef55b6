using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers;

/// <summary>
/// Companion files of a multi-file capture (a .vmem beside its .vmss/.vmsn). A companion is found by the capture's
/// naming rule (same directory, same base name, the companion's extension) and is then checked by content: the name
/// only says where to look, never what a file is.
/// </summary>
internal static class Companions
{
    /// <summary>The path of the companion of <paramref name="path"/> with <paramref name="extension"/> (e.g. ".vmem").</summary>
    public static string Sibling(string path, string extension) => Path.ChangeExtension(path, extension);

    /// <summary>Reads up to <paramref name="destination"/>.Length bytes from the start of a file; 0 when it is missing or unreadable.</summary>
    public static int ReadHead(string path, Span<byte> destination)
    {
        try
        {
            if (!File.Exists(path))
            {
                return 0;
            }
            using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, bufferSize: 1);
            return stream.ReadAtLeast(destination, destination.Length, throwOnEndOfStream: false);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return 0;
        }
    }

    /// <summary>Opens a companion read-only.</summary>
    /// <exception cref="FormatErrorException">when it is missing, empty or unreadable; the message names the expected path.</exception>
    public static MappedFile Open(string path, string format, string role)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw Fail.At(format, role, -1, $"the companion file {path} does not exist");
        }
        if (info.Length == 0)
        {
            throw Fail.At(format, role, -1, $"the companion file {path} is empty");
        }
        try
        {
            return MappedFile.Open(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw Fail.At(format, role, -1, $"the companion file {path} cannot be opened: {(e is UnauthorizedAccessException ? "permission denied" : e.Message)}");
        }
    }
}
