using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>One mount of a mount namespace (linux.mountinfo), the fields of /proc/PID/mountinfo.</summary>
/// <param name="Namespace">Inode number of the mount namespace (as in mnt:[N]), null when unreadable.</param>
/// <param name="Pids">How many processes on the task list use this namespace.</param>
/// <param name="MountId">mount.mnt_id.</param>
/// <param name="ParentId">The parent mount's mnt_id (the namespace's root mount is its own parent).</param>
/// <param name="Device">The superblock's device as major:minor.</param>
/// <param name="Root">The directory of the file system mounted here (a bind mount's source directory, usually "/").</param>
/// <param name="MountPoint">Where it is mounted, relative to the namespace's root.</param>
/// <param name="Options">Per-mount options: rw or ro, then nosuid, nodev, noexec, noatime, nodiratime, relatime, nosymfollow.</param>
/// <param name="Propagation">The optional fields: shared:N, master:N, unbindable; empty when private.</param>
/// <param name="FsType">The file system type (with its subtype as type.subtype).</param>
/// <param name="Source">mount.mnt_devname.</param>
/// <param name="SuperOptions">The superblock's generic options (rw or ro, sync, dirsync, mand, lazytime); the file system's own options
/// (size=, mode=) come from its show_options code and are not rebuilt.</param>
/// <param name="Mount">The struct mount.</param>
/// <param name="Doubt">What could not be read, or null.</param>
public sealed record LinuxMount(uint? Namespace, int Pids, int MountId, int ParentId, string? Device, string Root, string MountPoint, string Options, string Propagation,
    string FsType, string Source, string SuperOptions, [property: Hex] ulong Mount, string? Doubt);

/// <summary>
/// linux.mountinfo: the mount tree of every mount namespace in use (found through each process's nsproxy->mnt_ns),
/// walked along mnt_namespace.list in the order /proc/PID/mountinfo prints it.
/// </summary>
public static class LinuxMountInfo
{
    private const int MaxMounts = 1 << 20;
    private const int MaxNamespaces = 65_536;
    private const int MntNoSuid = 0x1, MntNoDev = 0x2, MntNoExec = 0x4, MntNoAtime = 0x8, MntNoDirAtime = 0x10, MntRelAtime = 0x20, MntReadOnly = 0x40,
        MntNoSymFollow = 0x80, MntShared = 0x1000, MntUnbindable = 0x2000;
    private const ulong SbReadOnly = 1, SbSynchronous = 16, SbMandLock = 64, SbDirSync = 128, SbLazyTime = 1 << 25;

    private sealed class Layout(TypeModel t)
    {
        public int TaskNsProxy { get; } = t.OptionalOffset("task_struct", "nsproxy");
        public int NsProxyMnt { get; } = t.OptionalOffset("nsproxy", "mnt_ns");
        public int NsList { get; } = t.OptionalOffset("mnt_namespace", "list");
        public int NsInum { get; } = t.OptionalOffset("mnt_namespace", "ns.inum");
        public int MntList { get; } = t.OptionalOffset("mount", "mnt_list");
        public int MntId { get; } = t.OptionalOffset("mount", "mnt_id");
        public int MntGroupId { get; } = t.OptionalOffset("mount", "mnt_group_id");
        public int MntMaster { get; } = t.OptionalOffset("mount", "mnt_master");
        public int MntDevName { get; } = t.OptionalOffset("mount", "mnt_devname");
        public int VfsSb { get; } = t.OptionalOffset("vfsmount", "mnt_sb");
        public int VfsFlags { get; } = t.OptionalOffset("vfsmount", "mnt_flags");
        public int SbDev { get; } = t.OptionalOffset("super_block", "s_dev");
        public int SbFlags { get; } = t.OptionalOffset("super_block", "s_flags");
        public int SbType { get; } = t.OptionalOffset("super_block", "s_type");
        public int SbSubtype { get; } = t.OptionalOffset("super_block", "s_subtype");
        public int FsName { get; } = t.OptionalOffset("file_system_type", "name");
        public int DentryParent { get; } = t.OptionalOffset("dentry", "d_parent");
    }

    /// <summary>linux.mountinfo.</summary>
    public static RowsReport<LinuxMount> Run(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxMount>();
        var l = new Layout(context.Types);
        var paths = new LinuxFilePaths(context);
        IVirtualMemory k = context.Kernel.Kernel;
        if (l.TaskNsProxy < 0 || l.NsProxyMnt < 0 || l.NsList < 0 || l.MntList < 0 || l.MntId < 0 || paths.MountMnt < 0 || paths.MountParent < 0)
        {
            notes.Add($"the type information ({context.Types.Source}) lacks task_struct.nsproxy, nsproxy.mnt_ns, mnt_namespace.list or mount.mnt_list/mnt_id/mnt/mnt_parent"
                + " (Linux 6.8+ keeps mounts in an rbtree, not read yet)");
            return new RowsReport<LinuxMount>("linux.mountinfo", rows, notes);
        }
        (List<LinuxProcess> processes, List<string> listNotes) = LinuxProcesses.List(context, ct);
        notes.AddRange(listNotes);
        // Namespaces in the order their first user appears on the task list (init's first), with how many processes use each.
        var namespaces = new List<ulong>();
        var users = new Dictionary<ulong, int>();
        foreach (LinuxProcess process in processes)
        {
            if (!k.TryReadUInt64(process.Offset + (ulong)l.TaskNsProxy, out ulong nsproxy) || nsproxy == 0
                || !k.TryReadUInt64(nsproxy + (ulong)l.NsProxyMnt, out ulong ns) || ns == 0)
            {
                continue;
            }
            if (users.TryAdd(ns, 0))
            {
                if (namespaces.Count == MaxNamespaces)
                {
                    notes.Add($"more than {MaxNamespaces} mount namespaces: the rest left out");
                    break;
                }
                namespaces.Add(ns);
            }
            users[ns] += process.KernelThread ? 0 : 1;
        }
        foreach (ulong ns in namespaces)
        {
            uint? inum = l.NsInum >= 0 && k.TryReadUInt32(ns + (ulong)l.NsInum, out uint n) ? n : null;
            foreach (ulong link in context.WalkList(ns + (ulong)l.NsList, $"mounts of mount namespace 0x{ns:X}", "mounts", MaxMounts, notes, ct))
            {
                ct.ThrowIfCancellationRequested();
                rows.Add(Describe(k, l, paths, inum, users[ns], link - (ulong)l.MntList));
            }
        }
        return new RowsReport<LinuxMount>("linux.mountinfo", rows, notes);
    }

    private static ulong Read64(IVirtualMemory k, ulong address, int offset) => offset >= 0 && address != 0 && k.TryReadUInt64(address + (ulong)offset, out ulong v) ? v : 0;

    private static LinuxMount Describe(IVirtualMemory k, Layout l, LinuxFilePaths paths, uint? ns, int pids, ulong mount)
    {
        var doubts = new List<string>();
        ulong vfsmount = mount + (ulong)paths.MountMnt;
        int id = k.TryReadUInt32(mount + (ulong)l.MntId, out uint i) ? (int)i : 0;
        ulong parent = Read64(k, mount, paths.MountParent);
        int parentId = parent != 0 && k.TryReadUInt32(parent + (ulong)l.MntId, out uint p) ? (int)p : 0;
        if (id == 0 || parentId == 0)
        {
            doubts.Add("mnt_id or the parent's unreadable");
        }
        uint flags = l.VfsFlags >= 0 && k.TryReadUInt32(vfsmount + (ulong)l.VfsFlags, out uint f) ? f : 0;
        ulong sb = Read64(k, vfsmount, l.VfsSb);
        string? device = l.SbDev >= 0 && sb != 0 && k.TryReadUInt32(sb + (ulong)l.SbDev, out uint dev)
            ? LinuxFilePaths.DeviceName(dev) : null;
        ulong sbFlags = Read64(k, sb, l.SbFlags);
        string fsType = k.ReadCString(Read64(k, Read64(k, sb, l.SbType), l.FsName), 64) ?? "?";
        ulong subtype = Read64(k, sb, l.SbSubtype);
        if (subtype != 0 && k.ReadCString(subtype, 64) is { Length: > 0 } sub)
        {
            fsType += "." + sub;
        }
        ulong devName = Read64(k, mount, l.MntDevName);
        string source = devName != 0 ? k.ReadCString(devName, 256) ?? "?" : "none";
        ulong root = Read64(k, vfsmount, paths.VfsMountRoot);
        string mountPoint = "/";
        if (parent != 0 && parent != mount)
        {
            FilePathResult at = paths.Resolve(parent + (ulong)paths.MountMnt, Read64(k, mount, paths.MountPoint));
            mountPoint = at.Path;
            if (at.Doubt is not null)
            {
                doubts.Add(at.Doubt);
            }
        }
        if (fsType == "?" || device is null)
        {
            doubts.Add("superblock unreadable");
        }
        var options = new StringBuilder((flags & MntReadOnly) != 0 ? "ro" : "rw");
        foreach ((int bit, string name) in new[] { (MntNoSuid, "nosuid"), (MntNoDev, "nodev"), (MntNoExec, "noexec"), (MntNoAtime, "noatime"),
            (MntNoDirAtime, "nodiratime"), (MntRelAtime, "relatime"), (MntNoSymFollow, "nosymfollow") })
        {
            if ((flags & bit) != 0)
            {
                options.Append(',').Append(name);
            }
        }
        var propagation = new List<string>();
        if ((flags & MntShared) != 0 && l.MntGroupId >= 0 && k.TryReadUInt32(mount + (ulong)l.MntGroupId, out uint group))
        {
            propagation.Add(string.Create(CultureInfo.InvariantCulture, $"shared:{group}"));
        }
        ulong master = Read64(k, mount, l.MntMaster);
        if (master != 0 && l.MntGroupId >= 0 && k.TryReadUInt32(master + (ulong)l.MntGroupId, out uint masterGroup))
        {
            propagation.Add(string.Create(CultureInfo.InvariantCulture, $"master:{masterGroup}"));
        }
        if ((flags & MntUnbindable) != 0)
        {
            propagation.Add("unbindable");
        }
        var super = new StringBuilder((sbFlags & SbReadOnly) != 0 ? "ro" : "rw");
        foreach ((ulong bit, string name) in new[] { (SbSynchronous, "sync"), (SbDirSync, "dirsync"), (SbMandLock, "mand"), (SbLazyTime, "lazytime") })
        {
            if ((sbFlags & bit) != 0)
            {
                super.Append(',').Append(name);
            }
        }
        return new LinuxMount(ns, pids, id, parentId, device, RootWithinFileSystem(k, l, paths, root), mountPoint, options.ToString(), string.Join(' ', propagation),
            fsType, source, super.ToString(), mount, doubts.Count == 0 ? null : string.Join("; ", doubts));
    }

    // The mount's root dentry as a path inside its own file system (no mount crossing): "/" unless a bind mount of a subdirectory.
    private static string RootWithinFileSystem(IVirtualMemory k, Layout l, LinuxFilePaths paths, ulong dentry)
    {
        var parts = new List<string>();
        for (int guard = 0; guard < 256 && dentry != 0; guard++)
        {
            ulong parent = Read64(k, dentry, l.DentryParent);
            if (parent == 0 || parent == dentry)
            {
                break;
            }
            parts.Add(paths.Name(dentry));
            dentry = parent;
        }
        parts.Reverse();
        return "/" + string.Join('/', parts);
    }

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        PluginRegistry.Register("linux.mountinfo", "Mounts per mount namespace: mount id, parent, device, root, mount point, options, propagation, type, source",
            TargetOs.Linux, PluginInputs.None, (c, a, ct) => Run(c.Linux(ct), ct));
    }
}
