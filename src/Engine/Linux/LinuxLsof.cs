using System.Buffers.Binary;
using System.Globalization;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>What an open file is, from its inode's i_mode (S_IFMT).</summary>
public enum LinuxFileType
{
    /// <summary>The inode is unreadable or its type bits are not a known type.</summary>
    Unknown,
    /// <summary>S_IFREG.</summary>
    Regular,
    /// <summary>S_IFDIR.</summary>
    Directory,
    /// <summary>S_IFCHR.</summary>
    CharacterDevice,
    /// <summary>S_IFBLK.</summary>
    BlockDevice,
    /// <summary>S_IFIFO (pipes and named pipes).</summary>
    Fifo,
    /// <summary>S_IFSOCK.</summary>
    Socket,
    /// <summary>S_IFLNK.</summary>
    Symlink,
}

/// <summary>One open file descriptor of a process (linux.lsof), as /proc/PID/fd and /proc/PID/fdinfo show it.</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Comm">task_struct.comm.</param>
/// <param name="Fd">The descriptor number.</param>
/// <param name="Path">What readlink /proc/PID/fd/FD gives: a path (" (deleted)" for an unlinked file), pipe:[N], socket:[N], anon_inode:NAME.</param>
/// <param name="Type">The inode's type.</param>
/// <param name="Inode">The inode number, null when unreadable.</param>
/// <param name="Device">The file system's device as major:minor (as /proc/PID/mountinfo shows it), null when unreadable.</param>
/// <param name="Access">Open for r, w or rw (file.f_mode FMODE_READ/FMODE_WRITE).</param>
/// <param name="Flags">file.f_flags (O_* bits, octal in /proc/PID/fdinfo).</param>
/// <param name="Position">file.f_pos.</param>
/// <param name="Mode">The inode's permission bits (i_mode &amp; 07777).</param>
/// <param name="Size">The inode's i_size.</param>
/// <param name="Modified">The inode's modification time, null when unreadable or never set (sockets).</param>
/// <param name="Deleted">The file was unlinked while open (its dentry is unhashed); never set for pipes, sockets and anonymous inodes.</param>
/// <param name="File">The struct file.</param>
/// <param name="Doubt">What could not be read, or null.</param>
public sealed record LinuxOpenFile(int Pid, string Comm, int Fd, string Path, LinuxFileType Type, ulong? Inode, string? Device, string Access,
    [property: Hex] uint Flags, long? Position, [property: Hex] uint? Mode, long? Size, DateTimeOffset? Modified, bool Deleted, [property: Hex] ulong File, string? Doubt);

/// <summary>
/// linux.lsof: every open file descriptor of every process, from task_struct.files -> fdtable, with the path rebuilt from
/// dentries and mounts as the kernel's d_path does (pseudo files named by their file system's d_dname: pipe:[N], socket:[N],
/// anon_inode:NAME).
/// </summary>
public static class LinuxLsof
{
    private const uint FmodeRead = 1, FmodeWrite = 2;

    /// <summary>The offsets of the file descriptor table, resolved once per walk.</summary>
    internal sealed class FdLayout(TypeModel t)
    {
        public int TaskFiles { get; } = t.OptionalOffset("task_struct", "files");
        public int FilesFdt { get; } = t.OptionalOffset("files_struct", "fdt");
        public int FdtMax { get; } = t.OptionalOffset("fdtable", "max_fds");
        public int FdtFd { get; } = t.OptionalOffset("fdtable", "fd");

        /// <summary>Whether the type model has everything the walk needs.</summary>
        public bool Complete => TaskFiles >= 0 && FilesFdt >= 0 && FdtMax >= 0 && FdtFd >= 0;
    }

    /// <summary>
    /// The open files (descriptor, struct file) of the task at <paramref name="task"/>: task->files->fdt->fd[0..max_fds),
    /// at most <see cref="AnalysisLimits.MaxFileDescriptors"/>; empty when the table is unreadable (a kernel thread, an exited task).
    /// </summary>
    internal static List<(int Fd, ulong File)> OpenFiles(IVirtualMemory k, FdLayout l, ulong task)
    {
        var files = new List<(int, ulong)>();
        if (!l.Complete || !k.TryReadUInt64(task + (ulong)l.TaskFiles, out ulong table) || table == 0
            || !k.TryReadUInt64(table + (ulong)l.FilesFdt, out ulong fdt)
            || !k.TryReadUInt32(fdt + (ulong)l.FdtMax, out uint maxFds)
            || !k.TryReadUInt64(fdt + (ulong)l.FdtFd, out ulong fdArray))
        {
            return files;
        }
        maxFds = Math.Min(maxFds, (uint)AnalysisLimits.Default.MaxFileDescriptors);
        byte[] pointers = new byte[maxFds * 8];
        int got = k.Read(fdArray, pointers);
        for (int fd = 0; fd < got / 8; fd++)
        {
            ulong file = BinaryPrimitives.ReadUInt64LittleEndian(pointers.AsSpan(fd * 8));
            if (file != 0)
            {
                files.Add((fd, file));
            }
        }
        return files;
    }

    private sealed class Layout(TypeModel t)
    {
        public int FileInode { get; } = t.OptionalOffset("file", "f_inode");
        public int FileFlags { get; } = t.OptionalOffset("file", "f_flags");
        public int FileMode { get; } = t.OptionalOffset("file", "f_mode");
        public int FilePos { get; } = t.OptionalOffset("file", "f_pos");
        public int InodeIno { get; } = t.OptionalOffset("inode", "i_ino");
        public int InodeMode { get; } = t.OptionalOffset("inode", "i_mode");
        public int InodeSize { get; } = t.OptionalOffset("inode", "i_size");
        public int InodeSb { get; } = t.OptionalOffset("inode", "i_sb");
        public int SbDev { get; } = t.OptionalOffset("super_block", "s_dev");
        // 6.1 keeps struct timespec64 i_mtime; 6.6+ splits it into i_mtime_sec / i_mtime_nsec.
        public int MtimeSec { get; } = t.TryGetOffset("inode", "i_mtime.tv_sec", out int a) ? a : t.OptionalOffset("inode", "i_mtime_sec");
        public int MtimeNsec { get; } = t.TryGetOffset("inode", "i_mtime.tv_nsec", out int b) ? b : t.OptionalOffset("inode", "i_mtime_nsec");
    }

    /// <summary>linux.lsof: the open files of every process on the task list (or of <paramref name="pids"/>).</summary>
    public static RowsReport<LinuxOpenFile> Run(LinuxContext context, ISet<int>? pids = null, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxOpenFile>();
        var fdLayout = new FdLayout(context.Types);
        var l = new Layout(context.Types);
        if (!fdLayout.Complete || l.FileInode < 0)
        {
            notes.Add($"the type information ({context.Types.Source}) lacks task_struct.files, files_struct.fdt, fdtable.max_fds/fd or file.f_inode");
            return new RowsReport<LinuxOpenFile>("linux.lsof", rows, notes);
        }
        IVirtualMemory k = context.Kernel.Kernel;
        var paths = new LinuxFilePaths(context);
        (List<LinuxProcess> processes, List<string> listNotes) = LinuxProcesses.List(context, ct);
        notes.AddRange(listNotes);
        foreach (LinuxProcess process in processes.Where(p => !p.KernelThread && (pids is null || pids.Contains(p.Pid))))
        {
            foreach ((int fd, ulong file) in OpenFiles(k, fdLayout, process.Offset))
            {
                ct.ThrowIfCancellationRequested();
                rows.Add(Describe(k, l, paths, process, fd, file));
            }
        }
        return new RowsReport<LinuxOpenFile>("linux.lsof", rows, notes);
    }

    private static LinuxOpenFile Describe(IVirtualMemory k, Layout l, LinuxFilePaths paths, LinuxProcess process, int fd, ulong file)
    {
        var doubts = new List<string>();
        FilePathResult path = paths.Resolve(file);
        uint flags = l.FileFlags >= 0 && k.TryReadUInt32(file + (ulong)l.FileFlags, out uint f) ? f : 0;
        uint fmode = l.FileMode >= 0 && k.TryReadUInt32(file + (ulong)l.FileMode, out uint fm) ? fm : 0;
        long? position = l.FilePos >= 0 && k.TryReadUInt64(file + (ulong)l.FilePos, out ulong pos) ? (long)pos : null;
        ulong inode = k.TryReadUInt64(file + (ulong)l.FileInode, out ulong i) ? i : 0;
        ulong? number = null;
        uint? mode = null;
        long? size = null;
        string? device = null;
        DateTimeOffset? modified = null;
        LinuxFileType type = LinuxFileType.Unknown;
        if (inode == 0)
        {
            doubts.Add("file.f_inode unreadable");
        }
        else
        {
            number = l.InodeIno >= 0 && k.TryReadUInt64(inode + (ulong)l.InodeIno, out ulong n) ? n : null;
            if (l.InodeMode >= 0 && LinuxSockets.ReadU16(k, inode + (ulong)l.InodeMode) is ushort m)
            {
                mode = m & 0xFFFu;
                type = (m & 0xF000) switch
                {
                    0x8000 => LinuxFileType.Regular, 0x4000 => LinuxFileType.Directory, 0x2000 => LinuxFileType.CharacterDevice,
                    0x6000 => LinuxFileType.BlockDevice, 0x1000 => LinuxFileType.Fifo, 0xC000 => LinuxFileType.Socket, 0xA000 => LinuxFileType.Symlink,
                    _ => LinuxFileType.Unknown,
                };
            }
            size = l.InodeSize >= 0 && k.TryReadUInt64(inode + (ulong)l.InodeSize, out ulong s) ? (long)s : null;
            if (l.InodeSb >= 0 && l.SbDev >= 0 && k.TryReadUInt64(inode + (ulong)l.InodeSb, out ulong sb) && k.TryReadUInt32(sb + (ulong)l.SbDev, out uint dev))
            {
                device = LinuxFilePaths.DeviceName(dev); // MAJOR/MINOR of a kernel dev_t
            }
            if (l.MtimeSec >= 0 && k.TryReadUInt64(inode + (ulong)l.MtimeSec, out ulong seconds) && (long)seconds is > 0 and < 253402300800)
            {
                long nanos = l.MtimeNsec >= 0 && k.TryReadUInt32(inode + (ulong)l.MtimeNsec, out uint ns) && ns < 1_000_000_000 ? ns : 0;
                modified = DateTimeOffset.FromUnixTimeSeconds((long)seconds).AddTicks(nanos / 100);
            }
        }
        if (path.Doubt is not null)
        {
            doubts.Add(path.Doubt);
        }
        string access = ((fmode & FmodeRead) != 0 ? "r" : "") + ((fmode & FmodeWrite) != 0 ? "w" : "");
        return new LinuxOpenFile(process.Pid, process.Comm, fd, path.Path, type, number, device, access, flags, position, mode, size, modified,
            path.Deleted, file, doubts.Count == 0 ? null : string.Join("; ", doubts));
    }

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        PluginRegistry.Register("linux.lsof", "Open files per process: fd, path (deleted, pipe, socket, anon_inode), type, inode, device, access, flags, size, mtime",
            TargetOs.Linux, PluginInputs.ProcessFilter, (c, a, ct) => Run(c.Linux(ct), a.IntPids, ct));
    }
}
