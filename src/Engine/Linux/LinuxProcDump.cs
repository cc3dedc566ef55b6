using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Linux;

/// <summary>One file written by linux.procdump: a mapping, or the executable rebuilt from its mappings.</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Start">First address dumped.</param>
/// <param name="End">Address after the last one dumped.</param>
/// <param name="Path">The mapped file, or [heap], [stack], empty for anonymous memory.</param>
/// <param name="File">The name of the file written in the output directory.</param>
/// <param name="Bytes">Its length.</param>
/// <param name="UnreadablePages">Pages not in the capture (never touched, swapped out or missing), written as zeros.</param>
/// <param name="Result">"written", or why not ("NAME exists: not overwritten").</param>
public sealed record LinuxProcDumpRow(int Pid, [property: Hex] ulong Start, [property: Hex] ulong End, string Path, string File, ulong Bytes, long UnreadablePages, string Result);

/// <summary>
/// Writes a process's memory to files: one per mapping, and its main executable reassembled from the file-backed
/// mappings at their file offsets (what is left of a deleted or memfd executable).
/// </summary>
public static class LinuxProcDump
{
    private const int PageSize = 4096;

    /// <summary>linux.procdump: dumps process <paramref name="pid"/> into the existing directory <paramref name="outputDirectory"/>.
    /// Mappings larger than <paramref name="maxBytes"/> (default <see cref="AnalysisLimits.MaxDumpBytes"/>) are skipped with a note.</summary>
    /// <exception cref="DirectoryNotFoundException">The directory does not exist.</exception>
    public static RowsReport<LinuxProcDumpRow> Run(LinuxContext context, int pid, string outputDirectory, ulong? maxBytes = null, CancellationToken ct = default)
    {
        ulong limit = maxBytes ?? AnalysisLimits.Default.MaxDumpBytes;
        if (!Directory.Exists(outputDirectory))
        {
            throw new DirectoryNotFoundException($"output directory '{outputDirectory}' does not exist (create it first)");
        }
        (List<LinuxMapping> maps, List<string> notes) = LinuxMaps.List(context, new HashSet<int> { pid }, ct);
        var rows = new List<LinuxProcDumpRow>();
        AddressSpace? space = LinuxMalfind.UserSpace(context, pid, ct);
        if (maps.Count == 0 || space is null)
        {
            notes.Add($"pid {pid}: no such user process, or its memory map cannot be read");
            return new RowsReport<LinuxProcDumpRow>("linux.procdump", rows, notes);
        }
        foreach (LinuxMapping map in maps)
        {
            ct.ThrowIfCancellationRequested();
            ulong size = map.End - map.Start;
            if (size > limit || map.End < map.Start)
            {
                notes.Add($"pid {pid} 0x{map.Start:X}-0x{map.End:X}: {size} bytes is more than the limit of {limit}: not written");
                continue;
            }
            string name = FileName(pid, map);
            using (FileStream? output = DumpFiles.CreateNew(outputDirectory, name, out string result))
            {
                long unreadable = output is null ? 0 : CopyPages(space, map.Start, size, output, ct);
                rows.Add(new LinuxProcDumpRow(pid, map.Start, map.End, map.Path, name, output is null ? 0 : size, unreadable, result));
            }
        }
        LinuxProcDumpRow? elf = RebuildExecutable(context, space, pid, maps, outputDirectory, limit, notes, ct);
        if (elf is not null)
        {
            rows.Add(elf);
        }
        return new RowsReport<LinuxProcDumpRow>("linux.procdump", rows, notes);
    }

    /// <summary>The file a mapping is written to: pid, range (as /proc/PID/maps pads it) and a safe form of its path.</summary>
    internal static string FileName(int pid, LinuxMapping map)
        => $"pid.{pid}.0x{map.Start:x8}-0x{map.End:x8}.{Sanitise(map.Path, "anon")}.dmp";

    /// <summary>
    /// The executable (mm->exe_file, or the first file mapping when that is unreadable) rebuilt from its mappings
    /// ordered by file offset; gaps between them are zeros. Only when its first mapping starts with an ELF header.
    /// </summary>
    private static LinuxProcDumpRow? RebuildExecutable(LinuxContext context, AddressSpace space, int pid, List<LinuxMapping> maps,
        string outputDirectory, ulong maxBytes, List<string> notes, CancellationToken ct)
    {
        string? exePath = ExePath(context, pid, ct) ?? maps.FirstOrDefault(m => !m.Anonymous)?.Path;
        var parts = maps.Where(m => !m.Anonymous && m.Path == exePath).ToList();
        if (exePath is null || parts.Count == 0)
        {
            notes.Add($"pid {pid}: no mapping of its executable: no ELF rebuilt");
            return null;
        }
        ulong? inode = parts[0].Inode;
        parts = parts.Where(m => m.Inode == inode).OrderBy(m => m.PageIndex).ThenBy(m => m.Start).ToList();
        LinuxMapping first = parts.MinBy(m => m.Start)!;
        byte[] magic = new byte[4];
        if (first.PageIndex != 0 || space.Read(first.Start, magic) != 4 || !magic.AsSpan().SequenceEqual((ReadOnlySpan<byte>)[0x7F, (byte)'E', (byte)'L', (byte)'F']))
        {
            notes.Add($"pid {pid}: the first mapping of {exePath} at 0x{first.Start:X} is not an ELF header (or not in the capture): no ELF rebuilt");
            return null;
        }
        ulong length = parts.Max(m => m.PageIndex * PageSize + (m.End - m.Start));
        if (length > maxBytes)
        {
            notes.Add($"pid {pid}: the executable would be {length} bytes, more than the limit of {maxBytes}: no ELF rebuilt");
            return null;
        }
        string name = $"pid.{pid}.{Sanitise(ExecutableName(exePath), "exe")}.elf";
        using FileStream? output = DumpFiles.CreateNew(outputDirectory, name, out string result);
        if (output is null)
        {
            return new LinuxProcDumpRow(pid, first.Start, parts.Max(m => m.End), exePath, name, 0, 0, result);
        }
        long unreadable = 0;
        foreach (LinuxMapping part in parts)
        {
            output.Position = (long)(part.PageIndex * PageSize);
            unreadable += CopyPages(space, part.Start, part.End - part.Start, output, ct);
        }
        output.SetLength((long)length);
        return new LinuxProcDumpRow(pid, first.Start, parts.Max(m => m.End), exePath, name, length, unreadable, result);
    }

    /// <summary>The path of mm->exe_file.</summary>
    private static string? ExePath(LinuxContext context, int pid, CancellationToken ct)
    {
        (List<LinuxProcess> processes, _) = LinuxProcesses.List(context, ct);
        LinuxProcess? process = processes.FirstOrDefault(p => p.Pid == pid && p.Mm != 0);
        IVirtualMemory k = context.Kernel.Kernel;
        return process is not null && context.Types.TryGetOffset("mm_struct", "exe_file", out int exeOffset)
            && k.TryReadUInt64(process.Mm + (ulong)exeOffset, out ulong file) && file != 0
            ? LinuxMaps.FilePath(k, context, file) : null;
    }

    /// <summary>Copies [start, start+size) page by page; pages that do not translate are written as zeros and counted.</summary>
    private static long CopyPages(AddressSpace space, ulong start, ulong size, Stream output, CancellationToken ct)
    {
        byte[] page = new byte[PageSize];
        long unreadable = 0;
        for (ulong at = 0; at < size; at += PageSize)
        {
            if ((at & 0xFFFFF) == 0)
            {
                ct.ThrowIfCancellationRequested();
            }
            int count = (int)Math.Min(PageSize, size - at);
            Span<byte> chunk = page.AsSpan(0, count);
            int got = space.Read(start + at, chunk);
            if (got < count)
            {
                chunk[got..].Clear();
                unreadable++;
            }
            output.Write(chunk);
        }
        return unreadable;
    }

    /// <summary>The file name of an executable path without " (deleted)".</summary>
    internal static string ExecutableName(string path)
    {
        const string Deleted = " (deleted)";
        string p = path.EndsWith(Deleted, StringComparison.Ordinal) ? path[..^Deleted.Length] : path;
        int slash = p.LastIndexOf('/');
        return slash >= 0 ? p[(slash + 1)..] : p;
    }

    /// <summary>A path made safe for a file name: letters, digits, '.', '-' kept, runs of others become one '_'.</summary>
    internal static string Sanitise(string text, string empty)
    {
        var s = new StringBuilder();
        foreach (char c in text)
        {
            bool keep = char.IsAsciiLetterOrDigit(c) || c is '.' or '-';
            if (keep)
            {
                s.Append(c);
            }
            else if (s.Length > 0 && s[^1] != '_')
            {
                s.Append('_');
            }
        }
        string result = s.ToString().Trim('_', '.');
        if (result.Length > 80)
        {
            result = result[..80];
        }
        return result.Length == 0 ? empty : result;
    }
}
