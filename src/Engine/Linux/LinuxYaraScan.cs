using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Yara;

namespace CloudMem.Engine.Linux;

/// <summary>A YARA hit in a process's memory (linux.yarascan).</summary>
/// <param name="Pid">The process.</param>
/// <param name="Comm">Its task_struct.comm.</param>
/// <param name="Rule">The rule.</param>
/// <param name="String">The string identifier.</param>
/// <param name="VirtualAddress">Where the match starts in the process's address space.</param>
/// <param name="PhysicalAddress">Where that byte is in physical memory (null when the page is not present).</param>
/// <param name="Mapping">The mapping ([heap], [stack], a file path, or "anonymous").</param>
/// <param name="Length">The match's length.</param>
/// <param name="Preview">Its first bytes as printable ASCII.</param>
public sealed record LinuxYaraHit(int Pid, string Comm, string Rule, string String, [property: Hex] ulong VirtualAddress,
    [property: Hex] ulong? PhysicalAddress, string Mapping, int Length, string Preview);

/// <summary>linux.yarascan: YARA rules (libyara) over the readable mappings of each user process.</summary>
public static class LinuxYaraScan
{
    /// <summary>Scans every readable mapping of the processes (all user processes, or <paramref name="pids"/>).</summary>
    public static RowsReport<LinuxYaraHit> Scan(LinuxContext context, string rulePath, ISet<int>? pids = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(context);
        using YaraRules rules = YaraRules.Compile(rulePath);
        (List<LinuxMapping> maps, List<string> notes) = LinuxMaps.List(context, pids, ct);
        var rows = new List<LinuxYaraHit>();
        int maxHits = AnalysisLimits.Default.MaxScanResults;
        LinuxMalfind.ScanReadableMappings(context, maps, notes, (space, map) =>
        {
            string mapping = map.Path.Length == 0 ? "anonymous" : map.Path;
            return YaraScan.Range(rules, map.Start, map.End, (va, page) => space.TryTranslate(va, out _, out _) ? space.Read(va, page) : 0,
                (m, va, bytes) =>
                {
                    if (rows.Count < maxHits)
                    {
                        ulong? pa = space.TryTranslate(va, out Translation t, out _) ? t.PhysicalAddress : null;
                        rows.Add(new LinuxYaraHit(map.Pid, map.Comm, m.Rule, m.String, va, pa, mapping, m.Length, YaraRules.Preview(bytes)));
                    }
                }, ct);
        }, ct);
        if (rows.Count >= maxHits)
        {
            notes.Add($"more than {maxHits} hits: the rest are not shown");
        }
        notes.Add($"rules: {string.Join(", ", rules.Files)}");
        return new RowsReport<LinuxYaraHit>("linux.yarascan", [.. rows.OrderBy(r => r.Pid).ThenBy(r => r.VirtualAddress)], notes);
    }
}
