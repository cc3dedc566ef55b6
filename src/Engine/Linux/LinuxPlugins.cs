using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Linux;

/// <summary>A process with its command line (linux.psaux).</summary>
public sealed record LinuxProcessArgs([property: Hex] ulong Offset, int Pid, int Ppid, string Comm, string? Args);

/// <summary>A process placed in the parent tree (linux.pstree): Depth 0 are roots.</summary>
public sealed record LinuxTreeRow(int Depth, string Tree, int Pid, int Ppid, uint? Uid, string? Args);

/// <summary>The Linux process plugins: pure functions from a <see cref="LinuxContext"/> to typed rows.</summary>
public static class LinuxPlugins
{
    /// <summary>linux.pslist.</summary>
    public static RowsReport<LinuxProcess> PsList(LinuxContext context, CancellationToken ct = default)
    {
        (List<LinuxProcess> processes, List<string> notes) = LinuxProcesses.List(context, ct);
        return new RowsReport<LinuxProcess>("linux.pslist", processes, notes);
    }

    /// <summary>linux.psaux.</summary>
    public static RowsReport<LinuxProcessArgs> PsAux(LinuxContext context, CancellationToken ct = default)
    {
        (List<LinuxProcess> processes, List<string> notes) = LinuxProcesses.List(context, ct);
        var rows = processes.Select(p => new LinuxProcessArgs(p.Offset, p.Pid, p.Ppid, p.Comm,
            p.KernelThread ? $"[{p.Comm}]" : LinuxProcesses.CommandLine(context, p))).ToList();
        return new RowsReport<LinuxProcessArgs>("linux.psaux", rows, notes);
    }

    /// <summary>linux.sockstat.</summary>
    public static RowsReport<LinuxSocket> SockStat(LinuxContext context, CancellationToken ct = default)
    {
        (List<LinuxSocket> sockets, List<string> notes) = LinuxSockets.List(context, ct);
        return new RowsReport<LinuxSocket>("linux.sockstat", sockets, notes);
    }

    /// <summary>linux.maps (linux.proc.Maps in Volatility).</summary>
    public static RowsReport<LinuxMapping> Maps(LinuxContext context, ISet<int>? pids = null, CancellationToken ct = default)
    {
        (List<LinuxMapping> maps, List<string> notes) = LinuxMaps.List(context, pids, ct);
        return new RowsReport<LinuxMapping>("linux.maps", maps, notes);
    }

    /// <summary>linux.lsmod.</summary>
    public static RowsReport<LinuxModule> LsMod(LinuxContext context, CancellationToken ct = default)
    {
        (List<LinuxModule> modules, List<string> notes) = LinuxSockets.Modules(context, ct);
        return new RowsReport<LinuxModule>("linux.lsmod", modules, notes);
    }

    /// <summary>linux.pstree: processes under their parents, children in pid order.</summary>
    /// <param name="context">The kernel.</param>
    /// <param name="pids">When given: only these processes, their ancestors and their descendants.</param>
    /// <param name="ct">Cancels the walk.</param>
    public static RowsReport<LinuxTreeRow> PsTree(LinuxContext context, ISet<int>? pids = null, CancellationToken ct = default)
    {
        (List<LinuxProcess> processes, List<string> notes) = LinuxProcesses.List(context, ct);
        var byPid = processes.GroupBy(p => p.Pid).ToDictionary(g => g.Key, g => g.First());
        var children = processes.Where(p => p.Pid != p.Ppid && byPid.ContainsKey(p.Ppid))
            .GroupBy(p => p.Ppid).ToDictionary(g => g.Key, g => g.OrderBy(c => c.Pid).ToList());
        var rows = new List<LinuxTreeRow>();
        var visited = new HashSet<int>();
        void Visit(LinuxProcess p, int depth)
        {
            if (!visited.Add(p.Pid))
            {
                return;
            }
            string args = p.KernelThread ? $"[{p.Comm}]" : LinuxProcesses.CommandLine(context, p) ?? p.Comm;
            rows.Add(new LinuxTreeRow(depth, new string('.', depth) + p.Comm, p.Pid, p.Ppid, p.Uid, args));
            foreach (LinuxProcess child in children.GetValueOrDefault(p.Pid) ?? [])
            {
                Visit(child, depth + 1);
            }
        }
        foreach (LinuxProcess root in processes.Where(p => p.Pid == p.Ppid || !byPid.ContainsKey(p.Ppid) || p.Pid == 0).OrderBy(p => p.Pid))
        {
            Visit(root, 0);
        }
        foreach (LinuxProcess orphan in processes.Where(p => !visited.Contains(p.Pid)))
        {
            notes.Add($"pid {orphan.Pid} is in a parent cycle: listed at the root");
            Visit(orphan, 0);
        }
        if (pids is not null)
        {
            var keep = new HashSet<int>();
            foreach (int selected in pids.Where(byPid.ContainsKey))
            {
                // The process and its ancestors (bounded: a parent cycle ends at a pid seen before)...
                for (int at = selected; byPid.ContainsKey(at) && keep.Add(at); at = byPid[at].Ppid)
                {
                }
                // ...and its descendants.
                var pending = new Stack<int>(children.GetValueOrDefault(selected)?.Select(c => c.Pid) ?? []);
                while (pending.TryPop(out int child))
                {
                    if (keep.Add(child))
                    {
                        foreach (LinuxProcess grandchild in children.GetValueOrDefault(child) ?? [])
                        {
                            pending.Push(grandchild.Pid);
                        }
                    }
                }
            }
            rows = [.. rows.Where(r => keep.Contains(r.Pid))];
        }
        return new RowsReport<LinuxTreeRow>("linux.pstree", rows, notes);
    }
}
