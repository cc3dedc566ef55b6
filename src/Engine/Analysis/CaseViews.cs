using System.Globalization;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Windows;
using CloudMem.Engine.Windows.Network;

namespace CloudMem.Engine.Analysis;

/// <summary>The process tree and network endpoints of a case, from the process and socket plugins that ran.</summary>
internal static class CaseViews
{
    /// <summary>The processes; Linux start times placed from <paramref name="linuxBoot"/> when it is known.</summary>
    public static IReadOnlyList<CaseProcess> Processes(IReadOnlyList<IRowsReport> tables, DateTimeOffset? linuxBoot)
    {
        var processes = new List<CaseProcess>();
        if (Rows<LinuxProcess>(tables, "linux.pslist") is { } linux)
        {
            Dictionary<int, string?> args = (Rows<LinuxProcessArgs>(tables, "linux.psaux") ?? []).GroupBy(a => a.Pid).ToDictionary(g => g.Key, g => g.First().Args);
            processes.AddRange(linux.Select(p => new CaseProcess(p.Pid, p.Ppid, p.Comm, CaseTimeline.SinceBoot(linuxBoot, p.StartSeconds), args.GetValueOrDefault(p.Pid), false)));
            var listed = linux.Select(p => (long)p.Pid).ToHashSet();
            processes.AddRange((Rows<LinuxScannedTask>(tables, "linux.psscan") ?? [])
                .Where(t => !t.OnTaskList && t.InPidTable == true && t.ExitState is null && t.Pid == t.Tgid && listed.Add(t.Pid))
                .Select(t => new CaseProcess(t.Pid, t.Ppid, t.Comm, null, null, true)));
        }
        if (Rows<WindowsProcess>(tables, "windows.pslist") is { } windows)
        {
            Dictionary<long, string?> args = (Rows<WindowsCmdLine>(tables, "windows.cmdline") ?? []).GroupBy(a => a.Pid).ToDictionary(g => g.Key, g => g.First().Args);
            processes.AddRange(windows.Select(p => new CaseProcess(p.Pid, p.Ppid, p.ImageFileName, p.CreateTime, args.GetValueOrDefault(p.Pid), false)));
            var listed = windows.Select(p => p.Pid).ToHashSet();
            processes.AddRange((Rows<WindowsScannedProcess>(tables, "windows.psscan") ?? [])
                .Where(p => !p.OnList && listed.Add(p.Pid))
                .Select(p => new CaseProcess(p.Pid, p.Ppid, p.ImageFileName, p.CreateTime, args.GetValueOrDefault(p.Pid), true)));
        }
        return processes;
    }

    public static IReadOnlyList<CaseConnection> Connections(IReadOnlyList<IRowsReport> tables)
    {
        var connections = new List<CaseConnection>();
        foreach (LinuxSocket s in Rows<LinuxSocket>(tables, "linux.sockstat") ?? [])
        {
            if (s.Family == "AF_UNIX")
            {
                connections.Add(new CaseConnection(s.Pid, s.Comm, "UNIX", s.Path ?? "-", null, s.State));
            }
            else if (s.Family is "AF_INET" or "AF_INET6")
            {
                string protocol = (s.Protocol ?? s.Type) + (s.Family == "AF_INET6" ? "v6" : "");
                string? remote = s.RemotePort is null or 0 ? null : Endpoint(s.RemoteAddress, s.RemotePort.Value);
                connections.Add(new CaseConnection(s.Pid, s.Comm, protocol, Endpoint(s.LocalAddress, s.LocalPort ?? 0), remote, s.State));
            }
        }
        IEnumerable<WindowsNetScanRow>? scan = Rows<WindowsNetScanRow>(tables, "windows.netscan");
        foreach (WindowsNetScanRow n in scan ?? [])
        {
            string? remote = n.Kind == NetObjectKind.TcpEndpoint ? Endpoint(n.ForeignAddr, n.ForeignPort) : null;
            connections.Add(new CaseConnection(n.Pid, n.Owner, n.Proto, Endpoint(n.LocalAddr, n.LocalPort), remote,
                n.Kind == NetObjectKind.TcpListener ? "LISTENING" : n.State?.ToString()));
        }
        if (scan is null)
        {
            foreach (WindowsNetStatRow n in Rows<WindowsNetStatRow>(tables, "windows.netstat") ?? [])
            {
                string? remote = n.Kind == NetObjectKind.TcpEndpoint ? Endpoint(n.ForeignAddr, n.ForeignPort) : null;
                connections.Add(new CaseConnection(n.Pid, n.Owner, n.Proto, Endpoint(n.LocalAddr, n.LocalPort), remote,
                    n.Kind == NetObjectKind.TcpListener ? "LISTENING" : n.State?.ToString()));
            }
        }
        return connections;
    }

    private static string Endpoint(string? address, int port)
    {
        string a = address ?? "*";
        return (a.Contains(':', StringComparison.Ordinal) ? $"[{a}]" : a) + ":" + port.ToString(CultureInfo.InvariantCulture);
    }

    private static IReadOnlyList<T>? Rows<T>(IReadOnlyList<IRowsReport> tables, string plugin) where T : notnull
        => tables.FirstOrDefault(t => t.Title == plugin && t is RowsReport<T>) is RowsReport<T> table ? table.Rows : null;
}
