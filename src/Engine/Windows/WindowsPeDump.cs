using CloudMem.Engine.Core;
using System.Buffers.Binary;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>A PE file rebuilt from process memory (windows.procdump, windows.dlldump).</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Process">ImageFileName.</param>
/// <param name="Base">Image base in the process.</param>
/// <param name="Name">Module name (loader list BaseDllName, else the VAD's file name), or null.</param>
/// <param name="File">File written in the output directory, or null when nothing was written.</param>
/// <param name="Bytes">Length of the file.</param>
/// <param name="Sections">Sections copied.</param>
/// <param name="ZeroFilledPages">Pages not in the capture (not present, paged out), written as zeros.</param>
/// <param name="Result">"written", or why not (not a PE, file exists, too large).</param>
/// <param name="Fixes">What was changed in the headers to make the file consistent (raw layout re-laid, FileAlignment), or null.</param>
public sealed record WindowsPeDumpRow(long Pid, string Process, [property: Hex] ulong Base, string? Name, string? File, long Bytes, int Sections,
    long ZeroFilledPages, string Result, string? Fixes);

/// <summary>
/// Rebuilds PE files from a process's memory: the headers from the image base, each section read from its virtual
/// address and written at its raw offset (PointerToRawData, SizeOfRawData); when the raw layout in the header is
/// impossible (unaligned, overlapping, inside the headers) the sections are laid out again one after another at
/// FileAlignment and the section headers in the output say so. Pages not in the capture become zeros and are
/// counted. Files are named pid.PID.0xBASE.exe/dll and existing files are never overwritten.
/// </summary>
public static class WindowsPeDump
{
    private const int PageSize = 0x1000;
    private const int MaxSections = 96;

    /// <summary>Largest file written (SizeOfImage or the raw layout beyond it is refused).</summary>
    public const long DefaultMaxBytes = 512L << 20;

    /// <summary>windows.procdump: the executable (at PEB.ImageBaseAddress) of each process (or of <paramref name="pids"/>).</summary>
    /// <exception cref="DirectoryNotFoundException">The output directory does not exist.</exception>
    public static RowsReport<WindowsPeDumpRow> ProcDump(WindowsKernel kernel, string outputDirectory, ISet<long>? pids = null, long maxBytes = DefaultMaxBytes, CancellationToken ct = default)
        => Dump(kernel, outputDirectory, pids, null, exe: true, maxBytes, ct);

    /// <summary>windows.dlldump: the DLLs of each process (image VADs and loader-list bases other than the executable), or only the one at <paramref name="baseAddress"/>.</summary>
    /// <exception cref="DirectoryNotFoundException">The output directory does not exist.</exception>
    public static RowsReport<WindowsPeDumpRow> DllDump(WindowsKernel kernel, string outputDirectory, ISet<long>? pids = null, ulong? baseAddress = null, long maxBytes = DefaultMaxBytes, CancellationToken ct = default)
        => Dump(kernel, outputDirectory, pids, baseAddress, exe: false, maxBytes, ct);

    private static RowsReport<WindowsPeDumpRow> Dump(WindowsKernel kernel, string outputDirectory, ISet<long>? pids, ulong? only, bool exe, long maxBytes, CancellationToken ct)
    {
        if (!Directory.Exists(outputDirectory))
        {
            throw new DirectoryNotFoundException($"output directory '{outputDirectory}' does not exist (create it first)");
        }
        string title = exe ? "windows.procdump" : "windows.dlldump";
        WindowsVads walker = WindowsVads.For(kernel);
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.Select(kernel, pids, ct);
        var rows = new List<WindowsPeDumpRow>();
        foreach (WindowsProcess p in processes)
        {
            ct.ThrowIfCancellationRequested();
            WindowsProcessImage image = WindowsProcessImage.Read(kernel, p, notes, lists: !exe, ct: ct);
            if (image.Peb == 0 || image.ImageBase is not ulong imageBase)
            {
                if (pids is not null)
                {
                    notes.Add($"pid {p.Pid}: no user address space (no PEB): nothing to dump");
                }
                continue;
            }
            var targets = new List<(ulong Base, string? Name)>();
            if (exe)
            {
                targets.Add((imageBase, p.ImageFileName));
            }
            else
            {
                (List<WindowsVad> vads, List<string> walkNotes) = walker.List(p.Offset, p.Pid, ct);
                notes.AddRange(walkNotes);
                var names = new Dictionary<ulong, string?>();
                foreach (WindowsLoadedModule e in image.LoadOrder.Concat(image.MemoryOrder).Concat(image.InitOrder))
                {
                    names.TryAdd(e.Base, e.Name);
                }
                foreach (WindowsVad v in vads.Where(v => v.Kind == VadKind.Image))
                {
                    names.TryAdd(v.Start, v.FileName is null ? null : v.FileName[(v.FileName.LastIndexOf('\\') + 1)..]);
                }
                targets.AddRange(names.Where(n => n.Key != imageBase && (only is null || n.Key == only)).OrderBy(n => n.Key).Select(n => (n.Key, n.Value)));
                if (only is ulong wanted && targets.Count == 0)
                {
                    notes.Add($"pid {p.Pid}: no DLL (image VAD or loader entry) at 0x{wanted:X}");
                }
            }
            foreach ((ulong b, string? name) in targets)
            {
                string file = $"pid.{p.Pid}.0x{b:x}.{(exe ? "exe" : "dll")}";
                rows.Add(Rebuild(image.Space, p, b, name, Path.Combine(outputDirectory, file), maxBytes, ct));
            }
        }
        return new RowsReport<WindowsPeDumpRow>(title, rows, notes);
    }

    private readonly record struct Section(int HeaderOffset, uint VirtualAddress, uint VirtualSize, uint RawSize, uint RawPointer);

    /// <summary>Rebuilds the PE at <paramref name="imageBase"/> into <paramref name="path"/> (never overwriting).</summary>
    public static WindowsPeDumpRow Rebuild(IVirtualMemory space, WindowsProcess process, ulong imageBase, string? name, string path, long maxBytes = DefaultMaxBytes, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(space);
        ArgumentNullException.ThrowIfNull(process);
        string file = Path.GetFileName(path);
        WindowsPeDumpRow Failed(string why) => new(process.Pid, process.ImageFileName, imageBase, name, null, 0, 0, 0, why, null);
        byte[] first = new byte[PageSize];
        if (space.Read(imageBase, first) != PageSize)
        {
            return Failed("the first page of the image is not in the capture");
        }
        if (first[0] != 'M' || first[1] != 'Z')
        {
            return Failed("no MZ header at the image base");
        }
        int nt = BinaryPrimitives.ReadInt32LittleEndian(first.AsSpan(0x3C));
        if (nt is < 0x40 or > PageSize - 0x200 || BinaryPrimitives.ReadUInt32LittleEndian(first.AsSpan(nt)) != 0x00004550)
        {
            return Failed($"no PE signature at e_lfanew 0x{nt:X}");
        }
        int sectionCount = BinaryPrimitives.ReadUInt16LittleEndian(first.AsSpan(nt + 6));
        int optionalSize = BinaryPrimitives.ReadUInt16LittleEndian(first.AsSpan(nt + 20));
        int opt = nt + 24;
        ushort magic = BinaryPrimitives.ReadUInt16LittleEndian(first.AsSpan(opt));
        if (magic is not (0x10B or 0x20B))
        {
            return Failed($"optional header magic 0x{magic:X} is neither PE32 nor PE32+");
        }
        int sectionTable = opt + optionalSize;
        if (sectionCount > MaxSections || sectionTable + sectionCount * 40 > PageSize)
        {
            return Failed($"{sectionCount} sections at 0x{sectionTable:X} do not fit the first page");
        }
        uint fileAlignment = BinaryPrimitives.ReadUInt32LittleEndian(first.AsSpan(opt + 36));
        uint sizeOfHeaders = BinaryPrimitives.ReadUInt32LittleEndian(first.AsSpan(opt + 60));
        uint sizeOfImage = BinaryPrimitives.ReadUInt32LittleEndian(first.AsSpan(opt + 56));
        var fixes = new List<string>();
        if (fileAlignment is < 0x200 or > 0x10000 || (fileAlignment & (fileAlignment - 1)) != 0)
        {
            fixes.Add($"FileAlignment 0x{fileAlignment:X} -> 0x200");
            fileAlignment = 0x200;
        }
        uint headerEnd = Align(Math.Max(sizeOfHeaders, (uint)(sectionTable + sectionCount * 40)), fileAlignment);
        bool headersFixed = sizeOfHeaders == 0 || sizeOfHeaders > sizeOfImage || headerEnd > 0x10000;
        if (headersFixed)
        {
            fixes.Add($"SizeOfHeaders 0x{sizeOfHeaders:X} -> 0x{Align((uint)(sectionTable + sectionCount * 40), fileAlignment):X}");
            headerEnd = Align((uint)(sectionTable + sectionCount * 40), fileAlignment);
        }
        var sections = new List<Section>();
        for (int i = 0; i < sectionCount; i++)
        {
            int at = sectionTable + i * 40;
            sections.Add(new Section(at, BinaryPrimitives.ReadUInt32LittleEndian(first.AsSpan(at + 12)), BinaryPrimitives.ReadUInt32LittleEndian(first.AsSpan(at + 8)),
                BinaryPrimitives.ReadUInt32LittleEndian(first.AsSpan(at + 16)), BinaryPrimitives.ReadUInt32LittleEndian(first.AsSpan(at + 20))));
        }
        if (!RawLayoutValid(sections, headerEnd, fileAlignment, maxBytes))
        {
            fixes.Add("section raw offsets re-laid one after another at FileAlignment");
            uint next = headerEnd;
            for (int i = 0; i < sections.Count; i++)
            {
                Section s = sections[i];
                uint size = Align(s.VirtualSize != 0 ? s.VirtualSize : s.RawSize, fileAlignment);
                sections[i] = s with { RawPointer = size == 0 ? 0 : next, RawSize = size };
                next += size;
            }
        }
        long length = Math.Max(headerEnd, sections.Count == 0 ? 0 : sections.Max(s => (long)s.RawPointer + s.RawSize));
        if (length > maxBytes)
        {
            return Failed($"the file would be {length} bytes, more than the limit of {maxBytes}");
        }
        if (File.Exists(path))
        {
            return Failed($"{file} exists: not overwritten"); // checked before the copy too, so an existing file costs no reads
        }
        byte[] output = new byte[length];
        long zeroPages = Copy(space, imageBase, output.AsSpan(0, (int)headerEnd), ct);
        // The header bytes as written in the output describe the output.
        Span<byte> o = output;
        BinaryPrimitives.WriteUInt32LittleEndian(o[(opt + 36)..], fileAlignment);
        BinaryPrimitives.WriteUInt32LittleEndian(o[(opt + 60)..], headersFixed ? headerEnd : sizeOfHeaders);
        foreach (Section s in sections)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(o[(s.HeaderOffset + 16)..], s.RawSize);
            BinaryPrimitives.WriteUInt32LittleEndian(o[(s.HeaderOffset + 20)..], s.RawPointer);
            if (s.RawSize > 0)
            {
                zeroPages += Copy(space, imageBase + s.VirtualAddress, output.AsSpan((int)s.RawPointer, (int)s.RawSize), ct);
            }
        }
        using (FileStream? stream = DumpFiles.CreateNew(Path.GetDirectoryName(path)!, file, out string result))
        {
            if (stream is null)
            {
                return Failed(result);
            }
            stream.Write(output);
        }
        return new WindowsPeDumpRow(process.Pid, process.ImageFileName, imageBase, name, file, length, sections.Count, zeroPages, "written",
            fixes.Count == 0 ? null : string.Join("; ", fixes));
    }

    /// <summary>Raw offsets aligned, after the headers, within the size limit, and not overlapping each other.</summary>
    private static bool RawLayoutValid(List<Section> sections, uint headerEnd, uint fileAlignment, long maxBytes)
    {
        var used = sections.Where(s => s.RawSize != 0).OrderBy(s => s.RawPointer).ToList();
        long end = headerEnd;
        foreach (Section s in used)
        {
            if (s.RawPointer % fileAlignment != 0 || s.RawPointer < end || (long)s.RawPointer + s.RawSize > maxBytes)
            {
                return false;
            }
            end = (long)s.RawPointer + s.RawSize;
        }
        return true;
    }

    /// <summary>Copies page by page; what does not read stays zero and each such page is counted.</summary>
    private static long Copy(IVirtualMemory space, ulong va, Span<byte> into, CancellationToken ct)
    {
        long missing = 0;
        int done = 0;
        while (done < into.Length)
        {
            if ((done & 0xFFFFF) == 0)
            {
                ct.ThrowIfCancellationRequested();
            }
            ulong at = va + (ulong)done;
            int chunk = (int)Math.Min((ulong)(into.Length - done), PageSize - (at & (PageSize - 1)));
            Span<byte> part = into.Slice(done, chunk);
            int got = space.Read(at, part);
            if (got < chunk)
            {
                part[got..].Clear();
                missing++;
            }
            done += chunk;
        }
        return missing;
    }

    private static uint Align(uint value, uint alignment) => (uint)(((ulong)value + alignment - 1) / alignment * alignment);
}
