using CloudMem.Engine.Core;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>One row of windows.pstree.</summary>
/// <param name="Depth">0 for a process whose parent is not on the list.</param>
/// <param name="Tree">The image name indented by two spaces per level.</param>
/// <param name="Pid">UniqueProcessId.</param>
/// <param name="Ppid">InheritedFromUniqueProcessId.</param>
/// <param name="CreateTime">As in windows.pslist.</param>
/// <param name="Suspicious">The reasons of the parent rules this process breaks (joined with "; "), or null.</param>
public sealed record WindowsProcessTreeRow(int Depth, string Tree, long Pid, long Ppid, DateTimeOffset? CreateTime, string? Suspicious);

/// <summary>What a <see cref="SuspiciousParentRule"/> checks.</summary>
public enum ParentRuleKind
{
    /// <summary>A child in <see cref="SuspiciousParentRule.Children"/> whose parent is in <see cref="SuspiciousParentRule.Parents"/>.</summary>
    ForbiddenParent,

    /// <summary>A child in <see cref="SuspiciousParentRule.Children"/> whose parent is not in <see cref="SuspiciousParentRule.Parents"/> (or is not on the list).</summary>
    RequiredParent,

    /// <summary>A child in <see cref="SuspiciousParentRule.Children"/> that is not the first (by create time) of its name.</summary>
    Singleton,
}

/// <summary>A parent/child rule on image names (compared case-insensitively, truncated to the 15 bytes of ImageFileName).</summary>
public sealed record SuspiciousParentRule(string Id, ParentRuleKind Kind, IReadOnlyList<string> Children, IReadOnlyList<string> Parents, string Reason)
{
    private const int NameLength = 15;

    internal static bool NameIn(string imageFileName, IReadOnlyList<string> names)
        => names.Any(n => string.Equals(Truncate(n), Truncate(imageFileName), StringComparison.OrdinalIgnoreCase));

    private static string Truncate(string name) => name.Length > NameLength ? name[..NameLength] : name;
}

/// <summary>windows.pstree: the active process list arranged under parents, with suspicious-parent rules.</summary>
public static class WindowsProcessTree
{
    private static readonly string[] s_office = ["winword.exe", "excel.exe", "powerpnt.exe", "outlook.exe", "msedge.exe", "chrome.exe", "firefox.exe", "iexplore.exe"];
    private static readonly string[] s_shells = ["cmd.exe", "powershell.exe", "pwsh.exe", "wscript.exe", "cscript.exe", "mshta.exe", "rundll32.exe", "regsvr32.exe"];

    /// <summary>The default rule set.</summary>
    public static IReadOnlyList<SuspiciousParentRule> DefaultRules { get; } =
    [
        new("office-spawns-shell", ParentRuleKind.ForbiddenParent, s_shells, s_office, "Office/browser process started a shell or script host"),
        new("svchost-parent", ParentRuleKind.RequiredParent, ["svchost.exe"], ["services.exe"], "svchost.exe not started by services.exe"),
        new("lsass-parent", ParentRuleKind.RequiredParent, ["lsass.exe"], ["wininit.exe"], "lsass.exe not started by wininit.exe"),
        new("lsass-single", ParentRuleKind.Singleton, ["lsass.exe"], [], "more than one lsass.exe"),
    ];

    /// <summary>Rule violations per process (index into <paramref name="processes"/>), reasons in rule order.</summary>
    public static List<string>[] Evaluate(IReadOnlyList<WindowsProcess> processes, IReadOnlyList<SuspiciousParentRule> rules)
    {
        ArgumentNullException.ThrowIfNull(processes);
        ArgumentNullException.ThrowIfNull(rules);
        var reasons = new List<string>[processes.Count];
        for (int i = 0; i < processes.Count; i++)
        {
            reasons[i] = [];
            WindowsProcess child = processes[i];
            WindowsProcess? parent = ParentOf(processes, child);
            foreach (SuspiciousParentRule rule in rules)
            {
                if (!SuspiciousParentRule.NameIn(child.ImageFileName, rule.Children))
                {
                    continue;
                }
                bool broken = rule.Kind switch
                {
                    ParentRuleKind.ForbiddenParent => parent is not null && SuspiciousParentRule.NameIn(parent.ImageFileName, rule.Parents),
                    ParentRuleKind.RequiredParent => parent is null || !SuspiciousParentRule.NameIn(parent.ImageFileName, rule.Parents),
                    ParentRuleKind.Singleton => processes.Take(i).Concat(processes.Skip(i + 1)).Any(o =>
                        string.Equals(o.ImageFileName, child.ImageFileName, StringComparison.OrdinalIgnoreCase) && Earlier(o, child, processes)),
                    _ => false,
                };
                if (broken)
                {
                    string parentText = parent is null ? $"parent pid {child.Ppid} not on the list" : $"parent {parent.ImageFileName} pid {parent.Pid}";
                    reasons[i].Add($"{rule.Id}: {rule.Reason} ({parentText})");
                }
            }
        }
        return reasons;
    }

    /// <summary>windows.pstree with <see cref="DefaultRules"/>.</summary>
    public static RowsReport<WindowsProcessTreeRow> PsTree(WindowsKernel kernel, CancellationToken ct = default)
    {
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.List(kernel, ct);
        return new RowsReport<WindowsProcessTreeRow>("windows.pstree", Build(processes, DefaultRules), notes);
    }

    /// <summary>
    /// Depth-first rows: roots are processes whose parent is not on the list (or is themselves); children ordered by
    /// create time then pid. Processes only reachable through a parent cycle are emitted as roots.
    /// </summary>
    public static List<WindowsProcessTreeRow> Build(IReadOnlyList<WindowsProcess> processes, IReadOnlyList<SuspiciousParentRule> rules)
    {
        List<string>[] reasons = Evaluate(processes, rules);
        var index = new Dictionary<WindowsProcess, int>(ReferenceEqualityComparer.Instance);
        for (int i = 0; i < processes.Count; i++)
        {
            index[processes[i]] = i;
        }
        Comparison<int> order = (a, b) =>
        {
            int c = Nullable.Compare(processes[a].CreateTime, processes[b].CreateTime);
            return c != 0 ? c : processes[a].Pid.CompareTo(processes[b].Pid);
        };
        var rows = new List<WindowsProcessTreeRow>(processes.Count);
        foreach ((int i, int depth) in Forest.DepthFirst(processes.Count, i => ParentOf(processes, processes[i]) is { } parent ? index[parent] : null, order))
        {
            WindowsProcess p = processes[i];
            rows.Add(new WindowsProcessTreeRow(depth, new string(' ', 2 * depth) + p.ImageFileName, p.Pid, p.Ppid, p.CreateTime,
                reasons[i].Count == 0 ? null : string.Join("; ", reasons[i])));
        }
        return rows;
    }

    /// <summary>The process with pid Ppid, not created after the child (pid reuse), or null.</summary>
    private static WindowsProcess? ParentOf(IReadOnlyList<WindowsProcess> processes, WindowsProcess child)
        => processes.FirstOrDefault(p => p.Pid == child.Ppid && !ReferenceEquals(p, child)
            && !(p.CreateTime is { } pt && child.CreateTime is { } ct && pt > ct));

    private static bool Earlier(WindowsProcess a, WindowsProcess b, IReadOnlyList<WindowsProcess> processes)
    {
        int c = Nullable.Compare(a.CreateTime, b.CreateTime);
        if (c != 0)
        {
            return c < 0;
        }
        return a.Pid != b.Pid ? a.Pid < b.Pid : IndexOf(processes, a) < IndexOf(processes, b);
    }

    private static int IndexOf(IReadOnlyList<WindowsProcess> processes, WindowsProcess p)
    {
        for (int i = 0; i < processes.Count; i++)
        {
            if (ReferenceEquals(processes[i], p))
            {
                return i;
            }
        }
        return -1;
    }
}
