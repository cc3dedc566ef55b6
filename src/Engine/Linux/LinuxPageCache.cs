using System.Globalization;
using System.Runtime.CompilerServices;
using System.Security.Cryptography;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>A regular file's inode and its page cache (linux.pagecache.files).</summary>
/// <param name="FileSystem">The superblock's file system type (tmpfs, rootfs, ext4).</param>
/// <param name="Device">The superblock's device as major:minor.</param>
/// <param name="InodeNumber">inode.i_ino.</param>
/// <param name="Inode">The struct inode (give it to linux.pagecache.extract with --base).</param>
/// <param name="Path">The path through one mount of its file system (" (deleted)" when unlinked), null when no dentry names it.</param>
/// <param name="Size">inode.i_size in bytes.</param>
/// <param name="CachedPages">address_space.nrpages: pages of the file in memory.</param>
/// <param name="Deleted">i_nlink is 0: the file was unlinked and lives on only because it is open or mapped.</param>
/// <param name="Modified">The inode's modification time, null when unreadable.</param>
/// <param name="Doubt">What could not be read, or null.</param>
public sealed record LinuxCachedFile(string FileSystem, string? Device, ulong InodeNumber, [property: Hex] ulong Inode, string? Path, long Size, long CachedPages,
    bool Deleted, DateTimeOffset? Modified, string? Doubt);

/// <summary>A file rebuilt from its cached pages (linux.pagecache.extract).</summary>
/// <param name="Inode">The struct inode.</param>
/// <param name="Path">Its path, as linux.pagecache.files gives it.</param>
/// <param name="Size">i_size: the length of the file written.</param>
/// <param name="Pages">Pages the file spans.</param>
/// <param name="PresentPages">Pages found in the page cache and in the capture.</param>
/// <param name="MissingPages">Page indexes written as zeros (not cached, evicted, or outside the capture), as ranges "0-3,7"; empty when none.</param>
/// <param name="OutputFile">The file written, or null when none was.</param>
/// <param name="Sha256">SHA-256 of what was written (lower-case hex), null when nothing was.</param>
/// <param name="Result">"written", or why not (an existing file is never overwritten).</param>
public sealed record LinuxExtractedFile([property: Hex] ulong Inode, string? Path, long Size, long Pages, long PresentPages, string MissingPages, string? OutputFile,
    string? Sha256, string Result);

/// <summary>
/// linux.pagecache.files and linux.pagecache.extract: regular files in memory, from every superblock on super_blocks and its
/// s_inodes list, and a file rebuilt from the pages of its address_space (i_pages xarray -> struct page -> pfn through
/// vmemmap_base), missing pages zero-filled and listed. Deleted and tmpfs files included: their only copy may be this one.
/// </summary>
public static class LinuxPageCache
{
    private const int MaxSuperblocks = 65_536;
    private const int MaxInodesPerSuperblock = 1 << 20;
    private const long MaxFileBytes = 1L << 32;
    private const ulong DefaultVmemmap = 0xFFFFEA0000000000;

    private sealed class Layout(TypeModel t)
    {
        public int SbList { get; } = t.OptionalOffset("super_block", "s_list");
        public int SbInodes { get; } = t.OptionalOffset("super_block", "s_inodes");
        public int SbMounts { get; } = t.OptionalOffset("super_block", "s_mounts");
        public int SbType { get; } = t.OptionalOffset("super_block", "s_type");
        public int SbDev { get; } = t.OptionalOffset("super_block", "s_dev");
        public int FsName { get; } = t.OptionalOffset("file_system_type", "name");
        public int MountInstance { get; } = t.OptionalOffset("mount", "mnt_instance");
        public int InodeSbList { get; } = t.OptionalOffset("inode", "i_sb_list");
        public int InodeIno { get; } = t.OptionalOffset("inode", "i_ino");
        public int InodeMode { get; } = t.OptionalOffset("inode", "i_mode");
        public int InodeSize { get; } = t.OptionalOffset("inode", "i_size");
        public int InodeNlink { get; } = t.TryGetOffset("inode", "i_nlink", out int a) ? a : t.OptionalOffset("inode", "__i_nlink");
        public int InodeMapping { get; } = t.OptionalOffset("inode", "i_mapping");
        public int InodeDentry { get; } = t.OptionalOffset("inode", "i_dentry");
        public int MtimeSec { get; } = t.TryGetOffset("inode", "i_mtime.tv_sec", out int b) ? b : t.OptionalOffset("inode", "i_mtime_sec");
        public int DentryAlias { get; } = t.OptionalOffset("dentry", "d_u.d_alias");
        public int MappingPages { get; } = t.OptionalOffset("address_space", "i_pages");
        public int MappingNrPages { get; } = t.OptionalOffset("address_space", "nrpages");
        public int XaHead { get; } = t.OptionalOffset("xarray", "xa_head");
        public int PageSize { get; } = t.TryGetSize("page", out int s) ? s : -1;

        public bool Complete => SbList >= 0 && SbInodes >= 0 && InodeSbList >= 0 && InodeMapping >= 0 && MappingPages >= 0 && XaHead >= 0 && PageSize > 0 && InodeMode >= 0 && InodeSize >= 0;
    }

    private static ulong Read64(IVirtualMemory k, ulong address, int offset) => offset >= 0 && address != 0 && k.TryReadUInt64(address + (ulong)offset, out ulong v) ? v : 0;

    /// <summary>linux.pagecache.files: the regular files of every superblock with their cached page counts.</summary>
    public static RowsReport<LinuxCachedFile> Files(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxCachedFile>();
        var l = new Layout(context.Types);
        if (!context.Kernel.Symbols.TryGetAddress("super_blocks", out ulong head) || !l.Complete)
        {
            notes.Add($"super_blocks (kallsyms) or super_block.s_list/s_inodes, inode.i_sb_list/i_mapping, address_space.i_pages, xa_node or struct page ({context.Types.Source}) is not available");
            return new RowsReport<LinuxCachedFile>("linux.pagecache.files", rows, notes);
        }
        IVirtualMemory k = context.Kernel.Kernel;
        var paths = new LinuxFilePaths(context);
        foreach (ulong sbLink in context.WalkList(head, "superblocks (super_blocks)", "superblocks", MaxSuperblocks, notes, ct))
        {
            ulong sb = sbLink - (ulong)l.SbList;
            string fs = k.ReadCString(Read64(k, Read64(k, sb, l.SbType), l.FsName), 64) ?? "?";
            string? device = l.SbDev >= 0 && k.TryReadUInt32(sb + (ulong)l.SbDev, out uint dev) ? LinuxFilePaths.DeviceName(dev) : null;
            // Paths go through the first mount of this superblock (s_mounts -> mount.mnt_instance).
            ulong firstMount = l.SbMounts >= 0 && l.MountInstance >= 0 ? Read64(k, sb, l.SbMounts) : 0;
            ulong vfsmount = firstMount != 0 && firstMount != sb + (ulong)l.SbMounts && paths.MountMnt >= 0 ? firstMount - (ulong)l.MountInstance + (ulong)paths.MountMnt : 0;
            foreach (ulong inodeLink in context.WalkList(sb + (ulong)l.SbInodes, $"inodes of superblock 0x{sb:X} ({fs})", "inodes", MaxInodesPerSuperblock, notes, ct))
            {
                ct.ThrowIfCancellationRequested();
                ulong inode = inodeLink - (ulong)l.InodeSbList;
                if (LinuxSockets.ReadU16(k, inode + (ulong)l.InodeMode) is not ushort mode || (mode & 0xF000) != 0x8000)
                {
                    continue;
                }
                rows.Add(Describe(k, l, paths, fs, device, vfsmount, inode));
            }
        }
        return new RowsReport<LinuxCachedFile>("linux.pagecache.files", rows, notes);
    }

    private static LinuxCachedFile Describe(IVirtualMemory k, Layout l, LinuxFilePaths paths, string fs, string? device, ulong vfsmount, ulong inode)
    {
        var doubts = new List<string>();
        ulong number = Read64(k, inode, l.InodeIno);
        long size = (long)Read64(k, inode, l.InodeSize);
        ulong mapping = Read64(k, inode, l.InodeMapping);
        long pages = (long)Read64(k, mapping, l.MappingNrPages);
        bool deleted = l.InodeNlink >= 0 && k.TryReadUInt32(inode + (ulong)l.InodeNlink, out uint links) && links == 0;
        DateTimeOffset? modified = l.MtimeSec >= 0 && k.TryReadUInt64(inode + (ulong)l.MtimeSec, out ulong seconds) && (long)seconds is > 0 and < 253402300800
            ? DateTimeOffset.FromUnixTimeSeconds((long)seconds) : null;
        string? path = null;
        ulong alias = Read64(k, inode, l.InodeDentry); // i_dentry.first -> dentry.d_u.d_alias
        if (alias != 0 && l.DentryAlias >= 0)
        {
            FilePathResult resolved = paths.Resolve(vfsmount, alias - (ulong)l.DentryAlias);
            path = resolved.Path;
            if (resolved.Doubt is not null)
            {
                doubts.Add(resolved.Doubt);
            }
        }
        if (mapping == 0)
        {
            doubts.Add("inode.i_mapping unreadable");
        }
        return new LinuxCachedFile(fs, device, number, inode, path, size, pages, deleted, modified, doubts.Count == 0 ? null : string.Join("; ", doubts));
    }

    /// <summary>The physical address of each cached page of <paramref name="mapping"/> by page index (xarray walk).</summary>
    private static SortedDictionary<long, ulong> CachedPages(LinuxContext context, Layout l, ulong mapping, long maxIndex, List<string> notes)
    {
        IVirtualMemory k = context.Kernel.Kernel;
        ulong vmemmap = context.Kernel.Symbols.TryGetAddress("vmemmap_base", out ulong at) && k.TryReadUInt64(at, out ulong v) ? v : DefaultVmemmap;
        var pages = new SortedDictionary<long, ulong>();
        foreach ((long index, (ulong page, int after)) in new KernelXArray(context.Types).Entries(k, Read64(k, mapping + (ulong)l.MappingPages, l.XaHead), maxIndex,
            notes, $"page cache of address_space 0x{mapping:X}"))
        {
            // struct page * -> frame number through the vmemmap array; a sibling slot is a later page of the same folio.
            pages[index] = page >= vmemmap ? ((page - vmemmap) / (ulong)l.PageSize * 4096) + ((ulong)after * 4096) : ulong.MaxValue;
        }
        return pages;
    }

    /// <summary>linux.pagecache.extract: the file of the inode at <paramref name="inode"/> rebuilt from its cached pages into
    /// <paramref name="outputDirectory"/> (never overwriting), pages not cached written as zeros and listed.</summary>
    public static RowsReport<LinuxExtractedFile> Extract(LinuxContext context, ulong inode, string outputDirectory, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxExtractedFile>();
        var l = new Layout(context.Types);
        IVirtualMemory k = context.Kernel.Kernel;
        LinuxCachedFile? file = Files(context, ct).Rows.FirstOrDefault(f => f.Inode == inode);
        if (file is null)
        {
            notes.Add($"0x{inode:X} is not the inode of a regular file on any superblock (give an Inode from linux.pagecache.files)");
            return new RowsReport<LinuxExtractedFile>("linux.pagecache.extract", rows, notes);
        }
        if (file.Size < 0 || file.Size > MaxFileBytes)
        {
            notes.Add($"inode 0x{inode:X}: size {file.Size} is implausible or above {MaxFileBytes} bytes: not extracted");
            return new RowsReport<LinuxExtractedFile>("linux.pagecache.extract", rows, notes);
        }
        long pageCount = (file.Size + 4095) / 4096;
        SortedDictionary<long, ulong> pages = CachedPages(context, l, Read64(k, inode, l.InodeMapping), pageCount - 1, notes);
        var missing = new List<long>();
        string name = string.Create(CultureInfo.InvariantCulture, $"inode-0x{inode:X}-{file.InodeNumber}.bin");
        using FileStream? output = DumpFiles.CreateNew(outputDirectory, name, out string result);
        if (output is null)
        {
            rows.Add(new LinuxExtractedFile(inode, file.Path, file.Size, pageCount, 0, "", null, null, result));
            return new RowsReport<LinuxExtractedFile>("linux.pagecache.extract", rows, notes);
        }
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[4096];
        for (long index = 0; index < pageCount; index++)
        {
            ct.ThrowIfCancellationRequested();
            int length = (int)Math.Min(4096, file.Size - (index * 4096));
            Array.Clear(buffer);
            if (!pages.TryGetValue(index, out ulong physical) || physical == ulong.MaxValue || context.Physical.Read(physical, buffer) != buffer.Length)
            {
                missing.Add(index);
                Array.Clear(buffer);
            }
            output.Write(buffer, 0, length);
            hash.AppendData(buffer, 0, length);
        }
        rows.Add(new LinuxExtractedFile(inode, file.Path, file.Size, pageCount, pageCount - missing.Count, Ranges(missing), Path.Combine(outputDirectory, name),
            System.Convert.ToHexStringLower(hash.GetHashAndReset()), result));
        return new RowsReport<LinuxExtractedFile>("linux.pagecache.extract", rows, notes);
    }

    private static string Ranges(List<long> indexes)
    {
        var parts = new List<string>();
        for (int i = 0; i < indexes.Count;)
        {
            int j = i;
            while (j + 1 < indexes.Count && indexes[j + 1] == indexes[j] + 1)
            {
                j++;
            }
            parts.Add(i == j ? indexes[i].ToString(CultureInfo.InvariantCulture) : string.Create(CultureInfo.InvariantCulture, $"{indexes[i]}-{indexes[j]}"));
            i = j + 1;
        }
        return string.Join(',', parts);
    }

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        PluginRegistry.Register("linux.pagecache.files", "Regular files in memory per superblock: inode, path, size, cached pages, deleted (tmpfs and unlinked files included)",
            TargetOs.Linux, PluginInputs.None, (c, a, ct) => Files(c.Linux(ct), ct));
        PluginRegistry.Register("linux.pagecache.extract", "A file rebuilt from its cached pages (--base INODE from linux.pagecache.files, --out DIR); missing pages zero-filled and listed",
            TargetOs.Linux, PluginInputs.BaseAddress | PluginInputs.OutputDirectory, (c, a, ct) => Extract(c.Linux(ct), a.BaseAddress!.Value, a.OutputDirectory!, ct));
    }
}
