using System.Globalization;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>A path rebuilt from a struct file or a (vfsmount, dentry) pair.</summary>
/// <param name="Path">The path as the kernel's d_path gives it (" (deleted)" appended for an unlinked file).</param>
/// <param name="Deleted">The dentry is unhashed (the file was unlinked while open).</param>
/// <param name="Doubt">What could not be read along the way, or null.</param>
internal readonly record struct FilePathResult(string Path, bool Deleted, string? Doubt);

/// <summary>
/// The one path builder for Linux files (maps, lsof, procdump, mountinfo): walks d_parent up to the root of each mount and
/// continues from where that mount is mounted (mnt_mountpoint in mnt_parent), as d_path does. Pseudo files whose file system
/// names them (d_op->d_dname: pipes, sockets, anonymous inodes, namespaces) get the kernel's names: pipe:[N], socket:[N],
/// anon_inode:NAME, net:[N]. Offsets and the d_dname functions' addresses are resolved once per instance; never throws for
/// what it reads.
/// </summary>
internal sealed class LinuxFilePaths
{
    private const int MaxDepth = 256;
    private const int MaxName = 256;
    private readonly IVirtualMemory _k;
    private readonly Dictionary<ulong, string> _dnames = [];

    public LinuxFilePaths(LinuxContext context)
    {
        _k = context.Kernel.Kernel;
        TypeModel t = context.Types;
        FilePath = t.OptionalOffset("file", "f_path");
        PathMnt = t.OptionalOffset("path", "mnt");
        PathDentry = t.OptionalOffset("path", "dentry");
        DentryName = t.OptionalOffset("dentry", "d_name");
        QstrName = t.OptionalOffset("qstr", "name");
        DentryParent = t.OptionalOffset("dentry", "d_parent");
        DentryHash = t.OptionalOffset("dentry", "d_hash");
        HashPprev = t.OptionalOffset("hlist_bl_node", "pprev");
        DentryOp = t.OptionalOffset("dentry", "d_op");
        DentryInode = t.OptionalOffset("dentry", "d_inode");
        DnameOp = t.OptionalOffset("dentry_operations", "d_dname");
        InodeIno = t.OptionalOffset("inode", "i_ino");
        InodePrivate = t.OptionalOffset("inode", "i_private");
        NsOps = t.OptionalOffset("ns_common", "ops");
        NsInum = t.OptionalOffset("ns_common", "inum");
        NsOpsName = t.OptionalOffset("proc_ns_operations", "name");
        MountMnt = t.OptionalOffset("mount", "mnt");
        MountParent = t.OptionalOffset("mount", "mnt_parent");
        MountPoint = t.OptionalOffset("mount", "mnt_mountpoint");
        VfsMountRoot = t.OptionalOffset("vfsmount", "mnt_root");
        foreach (string name in new[] { "pipefs_dname", "sockfs_dname", "anon_inodefs_dname", "ns_dname", "simple_dname", "dmabuffs_dname" })
        {
            if (context.Kernel.Symbols.TryGetAddress(name, out ulong address))
            {
                _dnames[address] = name;
            }
        }
    }

    private int FilePath { get; }
    private int PathMnt { get; }
    private int PathDentry { get; }
    private int DentryName { get; }
    private int QstrName { get; }
    private int DentryParent { get; }
    private int DentryHash { get; }
    private int HashPprev { get; }
    private int DentryOp { get; }
    private int DentryInode { get; }
    private int DnameOp { get; }
    private int InodeIno { get; }
    private int InodePrivate { get; }
    private int NsOps { get; }
    private int NsInum { get; }
    private int NsOpsName { get; }

    /// <summary>Offset of mount.mnt (the embedded vfsmount), -1 when unknown.</summary>
    public int MountMnt { get; }

    /// <summary>Offset of mount.mnt_parent.</summary>
    public int MountParent { get; }

    /// <summary>Offset of mount.mnt_mountpoint (the dentry it is mounted on).</summary>
    public int MountPoint { get; }

    /// <summary>Offset of vfsmount.mnt_root.</summary>
    public int VfsMountRoot { get; }

    private ulong Read64(ulong address, int offset) => offset >= 0 && address != 0 && _k.TryReadUInt64(address + (ulong)offset, out ulong v) ? v : 0;

    /// <summary>A kernel dev_t (12-bit major above a 20-bit minor) as /proc/PID/mountinfo prints it: "major:minor".</summary>
    public static string DeviceName(uint dev) => string.Create(CultureInfo.InvariantCulture, $"{dev >> 20}:{dev & 0xFFFFF}");

    /// <summary>The name of a dentry (its d_name), or "?" when unreadable.</summary>
    public string Name(ulong dentry)
    {
        ulong name = Read64(dentry + (ulong)Math.Max(0, DentryName), QstrName);
        return name != 0 && DentryName >= 0 ? _k.ReadCString(name, MaxName) ?? "?" : "?";
    }

    /// <summary>The path of a struct file (its f_path).</summary>
    public FilePathResult Resolve(ulong file)
    {
        if (FilePath < 0 || PathDentry < 0 || PathMnt < 0)
        {
            return new FilePathResult("?", false, "file.f_path, path.dentry or path.mnt not in the type information");
        }
        return Resolve(Read64(file + (ulong)FilePath, PathMnt), Read64(file + (ulong)FilePath, PathDentry));
    }

    /// <summary>The path of <paramref name="dentry"/> seen through <paramref name="vfsmount"/>.</summary>
    public FilePathResult Resolve(ulong vfsmount, ulong dentry)
    {
        if (DentryName < 0 || QstrName < 0 || DentryParent < 0)
        {
            return new FilePathResult("?", false, "dentry.d_name or d_parent not in the type information");
        }
        if (dentry == 0)
        {
            return new FilePathResult("?", false, "no dentry");
        }
        ulong mount = MountMnt >= 0 && vfsmount != 0 ? vfsmount - (ulong)MountMnt : 0;
        ulong mountRoot = Read64(vfsmount, VfsMountRoot);
        // A file system that names its own files (d_dname), unless the dentry is the root of its mount.
        ulong dname = DnameOp >= 0 ? Read64(Read64(dentry, DentryOp), DnameOp) : 0;
        if (dname != 0 && dentry != mountRoot)
        {
            string? special = Dname(dname, dentry);
            if (special is not null)
            {
                // simple_dname names an unlinked pseudo file (memfd, shmem): "/NAME (deleted)".
                return new FilePathResult(special, special.EndsWith(" (deleted)", StringComparison.Ordinal), null);
            }
        }
        // d_unlinked(): unhashed and not the root of its tree (a file system's root dentry is never hashed).
        bool deleted = DentryHash >= 0 && HashPprev >= 0 && Read64(dentry + (ulong)DentryHash, HashPprev) == 0 && Read64(dentry, DentryParent) != dentry;
        var parts = new List<string>();
        string? doubt = null;
        int guard = 0;
        for (; guard < MaxDepth && dentry != 0; guard++)
        {
            ulong parent = Read64(dentry, DentryParent);
            if (parent == 0)
            {
                doubt = $"dentry 0x{dentry:X} unreadable: the path is incomplete";
                break;
            }
            if (parent == dentry)
            {
                // A root dentry that is not its mount's root is a pseudo file (memfd, anonymous inode): d_path shows its own name.
                ulong root = mount != 0 ? Read64(mount + (ulong)MountMnt, VfsMountRoot) : 0;
                if (root != 0 && root != dentry)
                {
                    parts.Add(Name(dentry));
                    break;
                }
                // Root of this mount: continue from where it is mounted, unless this is the top.
                ulong mountParent = mount != 0 ? Read64(mount, MountParent) : 0;
                if (mount == 0 || mountParent == 0 || mountParent == mount)
                {
                    break;
                }
                dentry = Read64(mount, MountPoint);
                mount = mountParent;
                continue;
            }
            parts.Add(Name(dentry));
            dentry = parent;
        }
        if (guard == MaxDepth)
        {
            doubt = $"path deeper than {MaxDepth} levels (a dentry loop?): cut";
        }
        parts.Reverse();
        string path = "/" + string.Join('/', parts);
        return new FilePathResult(deleted ? path + " (deleted)" : path, deleted, doubt);
    }

    private string? Dname(ulong function, ulong dentry)
    {
        if (!_dnames.TryGetValue(function, out string? which))
        {
            return null;
        }
        ulong inode = Read64(dentry, DentryInode);
        string Ino() => InodeIno >= 0 && inode != 0 && _k.TryReadUInt64(inode + (ulong)InodeIno, out ulong n) ? n.ToString(CultureInfo.InvariantCulture) : "?";
        switch (which)
        {
            case "pipefs_dname":
                return $"pipe:[{Ino()}]";
            case "sockfs_dname":
                return $"socket:[{Ino()}]";
            case "anon_inodefs_dname":
                return "anon_inode:" + Name(dentry);
            case "simple_dname":
                return "/" + Name(dentry) + " (deleted)";
            case "dmabuffs_dname":
                return "/dmabuf:" + Name(dentry);
            case "ns_dname":
            {
                ulong ns = Read64(inode, InodePrivate);
                ulong ops = Read64(ns, NsOps);
                ulong name = Read64(ops, NsOpsName);
                string kind = name != 0 ? _k.ReadCString(name, 32) ?? "?" : "?";
                return NsInum >= 0 && ns != 0 && _k.TryReadUInt32(ns + (ulong)NsInum, out uint inum)
                    ? $"{kind}:[{inum.ToString(CultureInfo.InvariantCulture)}]" : $"{kind}:[?]";
            }
            default:
                return null;
        }
    }
}
