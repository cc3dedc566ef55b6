using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows.Files;

/// <summary>One section of a file object written out (windows.dumpfiles).</summary>
/// <param name="Pid">The process whose File handle led to the file (--pid); null when chosen by --base.</param>
/// <param name="FileObject">The _FILE_OBJECT (virtual address).</param>
/// <param name="FileName">_FILE_OBJECT.FileName.</param>
/// <param name="Section">DataSectionObject or ImageSectionObject.</param>
/// <param name="ControlArea">The section's _CONTROL_AREA.</param>
/// <param name="OutputFile">The file written (under --out; never overwritten), null when nothing was written.</param>
/// <param name="Bytes">Its size: the end of the furthest subsection.</param>
/// <param name="PagesWritten">Pages found in memory (valid or transition prototype PTEs) and written.</param>
/// <param name="PagesMissing">Pages not in memory (left as zeros in the file).</param>
/// <param name="MissingOffsets">File offsets of the missing pages (the first 64).</param>
/// <param name="Doubt">Why a subsection or the section could not be read.</param>
public sealed record DumpFileRow(long? Pid, [property: Hex] ulong FileObject, string? FileName, string Section, [property: Hex] ulong ControlArea, string? OutputFile,
    [property: Hex] long Bytes, int PagesWritten, int PagesMissing, string? MissingOffsets, string? Doubt);

/// <summary>
/// windows.dumpfiles: a file object's data and image sections written from the pages memory still holds.
/// _FILE_OBJECT.SectionObjectPointer -> _SECTION_OBJECT_POINTERS.DataSectionObject / ImageSectionObject -> _CONTROL_AREA,
/// its first _SUBSECTION right after it and the next through NextSubsection; each subsection's PtesInSubsection
/// prototype PTEs (SubsectionBase) map the file from StartingSector * 512 on: a valid PTE (bit 0) or a transition PTE
/// (bit 11 set, prototype bit 10 clear: the page is on a standby or modified list, still in memory) gives the page's
/// frame; any other PTE (paged out, never read) is a missing page, listed in the row and left as zeros. Files are named
/// file.0xFILEOBJECT.0xCONTROLAREA.SECTION.NAME.dat and created with FileMode.CreateNew. The shared cache map's views
/// (VACBs) are not read. Select with --base (a file object's address) or --pid (the File handles of those processes).
/// </summary>
public static class WindowsDumpFiles
{
    private const int PageBytes = 4096, MaxSubsections = 4096, MaxListedMissing = 64;
    private const ulong FrameMask = 0x0000FFFFFFFFF000;

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("windows.dumpfiles",
            "File data and image sections (control area, subsections, prototype PTEs) written to --out from memory, missing pages listed; --base FILE_OBJECT or --pid",
            TargetOs.Windows, PluginInputs.ProcessFilter | PluginInputs.OutputDirectory | PluginInputs.BaseAddress),
            (c, a, ct) => DumpFiles(c.Windows(ct), a.OutputDirectory!, a.LongPids, a.BaseAddress, ct));

    /// <summary>windows.dumpfiles: the file object at <paramref name="fileObject"/>, or the File handles of <paramref name="pids"/> (one of them is required).</summary>
    public static RowsReport<DumpFileRow> DumpFiles(WindowsKernel kernel, string outputDirectory, ISet<long>? pids = null, ulong? fileObject = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentException.ThrowIfNullOrEmpty(outputDirectory);
        var notes = new List<string>();
        var objects = new List<(ulong File, long? Pid)>();
        if (fileObject is { } one)
        {
            objects.Add((one, null));
        }
        else if (pids is { Count: > 0 })
        {
            var handles = WindowsHandles.Handles(kernel, pids, ct);
            notes.AddRange(handles.Notes);
            objects.AddRange(handles.Rows.Where(h => h.Type == "File").DistinctBy(h => h.Offset).Select(h => (h.Offset, (long?)h.Pid)));
        }
        else
        {
            throw new ArgumentException("windows.dumpfiles needs --base FILE_OBJECT or --pid PID (the files to write)");
        }
        Directory.CreateDirectory(outputDirectory);
        TypeModel t = kernel.Types;
        AddressSpace space = kernel.Kernel;
        int sectionPointers = t.RequiredOffset("_FILE_OBJECT", "SectionObjectPointer"), fileName = t.RequiredOffset("_FILE_OBJECT", "FileName");
        int controlAreaSize = t.RequiredSize("_CONTROL_AREA");
        var layout = new SubsectionLayout(t.RequiredOffset("_SUBSECTION", "SubsectionBase"), t.RequiredOffset("_SUBSECTION", "NextSubsection"),
            t.RequiredOffset("_SUBSECTION", "PtesInSubsection"), t.RequiredOffset("_SUBSECTION", "StartingSector"));
        var rows = new List<DumpFileRow>();
        foreach ((ulong file, long? pid) in objects)
        {
            ct.ThrowIfCancellationRequested();
            string? name = WindowsMemoryReader.UnicodeString(space, file + (ulong)fileName, UnicodeStringLayout.Of(t));
            if (!space.TryReadUInt64(file + (ulong)sectionPointers, out ulong pointers) || pointers == 0)
            {
                notes.Add($"_FILE_OBJECT 0x{file:X} ({name ?? "no name"}): SectionObjectPointer does not read or is null (the file is not cached)");
                continue;
            }
            foreach ((string section, int at) in new[] { ("DataSectionObject", t.RequiredOffset("_SECTION_OBJECT_POINTERS", "DataSectionObject")),
                ("ImageSectionObject", t.RequiredOffset("_SECTION_OBJECT_POINTERS", "ImageSectionObject")) })
            {
                if (!space.TryReadUInt64(pointers + (ulong)at, out ulong controlArea) || controlArea == 0)
                {
                    continue;
                }
                rows.Add(Dump(kernel, outputDirectory, pid, file, name, section, controlArea, controlArea + (ulong)controlAreaSize, layout, ct));
            }
        }
        return new RowsReport<DumpFileRow>("windows.dumpfiles", rows, notes);
    }

    private sealed record SubsectionLayout(int Base, int Next, int Ptes, int StartingSector);

    private static DumpFileRow Dump(WindowsKernel kernel, string directory, long? pid, ulong file, string? name, string section, ulong controlArea, ulong first,
        SubsectionLayout l, CancellationToken ct)
    {
        AddressSpace space = kernel.Kernel;
        var pages = new List<(long Offset, ulong Frame)>();
        var missing = new List<long>();
        string? doubt = null;
        long end = 0, maxPages = (long)(AnalysisLimits.Default.MaxDumpBytes / PageBytes);
        var seen = new HashSet<ulong>();
        for (ulong subsection = first; subsection != 0 && seen.Count < MaxSubsections && seen.Add(subsection);)
        {
            ct.ThrowIfCancellationRequested();
            if (!space.TryReadUInt64(subsection + (ulong)l.Base, out ulong ptes) || !space.TryReadUInt32(subsection + (ulong)l.Ptes, out uint count)
                || !space.TryReadUInt32(subsection + (ulong)l.StartingSector, out uint sector) || !space.TryReadUInt64(subsection + (ulong)l.Next, out ulong next))
            {
                doubt = $"subsection 0x{subsection:X} does not read; the file ends before it";
                break;
            }
            long start = (long)sector * 512;
            for (long i = 0; i < count && pages.Count + missing.Count < maxPages; i++)
            {
                long offset = start + i * PageBytes;
                end = Math.Max(end, offset + PageBytes);
                if (space.TryReadUInt64(ptes + (ulong)(i * 8), out ulong pte) && ((pte & 1) != 0 || (pte & 0xC00) == 0x800))
                {
                    pages.Add((offset, pte & FrameMask));
                }
                else
                {
                    missing.Add(offset);
                }
            }
            subsection = next;
        }
        string safe = string.Concat((Path.GetFileName((name ?? "").Replace('\\', '/')) is { Length: > 0 } n ? n : "unnamed").Select(c => char.IsLetterOrDigit(c) || c is '.' or '-' or '_' ? c : '_'));
        string fileName = $"file.0x{file:X}.0x{controlArea:X}.{section}.{safe}.dat";
        int written = 0;
        byte[] page = new byte[PageBytes];
        using (FileStream? output = Core.DumpFiles.CreateNew(directory, fileName, out string result))
        {
            if (output is null)
            {
                return new DumpFileRow(pid, file, name, section, controlArea, null, end, 0, missing.Count, null, result);
            }
            output.SetLength(end);
            foreach ((long offset, ulong frame) in pages)
            {
                if (kernel.Physical.Read(frame, page) != PageBytes)
                {
                    missing.Add(offset);
                    continue;
                }
                output.Position = offset;
                output.Write(page);
                written++;
            }
        }
        string path = Path.Combine(directory, fileName);
        missing.Sort();
        string? listed = missing.Count == 0 ? null : string.Join(",", missing.Take(MaxListedMissing).Select(o => $"0x{o:X}")) + (missing.Count > MaxListedMissing ? ",..." : "");
        return new DumpFileRow(pid, file, name, section, controlArea, path, end, written, missing.Count, listed, doubt);
    }
}
