using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Yara;

namespace CloudMem.Engine.Windows;

/// <summary>A YARA hit in a process's memory (windows.yarascan).</summary>
/// <param name="Pid">The process.</param>
/// <param name="Process">Its image file name.</param>
/// <param name="Rule">The rule.</param>
/// <param name="String">The string identifier.</param>
/// <param name="VirtualAddress">Where the match starts in the process's address space.</param>
/// <param name="PhysicalAddress">Where that byte is in physical memory (null when the page is not present).</param>
/// <param name="VadStart">The start of the VAD holding it.</param>
/// <param name="Length">The match's length.</param>
/// <param name="Preview">Its first bytes as printable ASCII.</param>
public sealed record WindowsYaraHit(long Pid, string Process, string Rule, string String, [property: Hex] ulong VirtualAddress,
    [property: Hex] ulong? PhysicalAddress, [property: Hex] ulong VadStart, int Length, string Preview);

/// <summary>windows.yarascan: YARA rules (libyara) over every VAD of each process.</summary>
public static class WindowsYaraScan
{
    /// <summary>Scans each process's VADs (all processes, or <paramref name="pids"/>); pages not present scan as zeros.</summary>
    public static RowsReport<WindowsYaraHit> Scan(WindowsKernel kernel, string rulePath, ISet<long>? pids = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        using YaraRules rules = YaraRules.Compile(rulePath);
        WindowsVads walker = WindowsVads.For(kernel);
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.Select(kernel, pids, ct);
        var rows = new List<WindowsYaraHit>();
        ulong maxBytes = AnalysisLimits.Default.MaxSecretScanBytes;
        int maxHits = AnalysisLimits.Default.MaxScanResults;
        foreach (WindowsProcess p in processes)
        {
            (List<WindowsVad> vads, List<string> walkNotes) = walker.List(p.Offset, p.Pid, ct);
            notes.AddRange(walkNotes);
            AddressSpace space = kernel.ProcessSpace(p.Dtb);
            ulong scanned = 0;
            foreach (WindowsVad v in vads)
            {
                if (scanned > maxBytes)
                {
                    notes.Add($"pid {p.Pid}: more than {maxBytes} bytes of VADs: the rest is not scanned");
                    break;
                }
                scanned += YaraScan.Range(rules, v.Start, v.End + 1, (va, page) => space.TryTranslate(va, out _, out _) ? space.Read(va, page) : 0,
                    (m, va, bytes) =>
                    {
                        if (rows.Count < maxHits)
                        {
                            ulong? pa = space.TryTranslate(va, out Translation t, out _) ? t.PhysicalAddress : null;
                            rows.Add(new WindowsYaraHit(p.Pid, p.ImageFileName, m.Rule, m.String, va, pa, v.Start, m.Length, YaraRules.Preview(bytes)));
                        }
                    }, ct);
            }
        }
        if (rows.Count >= maxHits)
        {
            notes.Add($"more than {maxHits} hits: the rest are not shown");
        }
        notes.Add($"rules: {string.Join(", ", rules.Files)}");
        return new RowsReport<WindowsYaraHit>("windows.yarascan", [.. rows.OrderBy(r => r.Pid).ThenBy(r => r.VirtualAddress)], notes);
    }
}
