using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Yara;

/// <summary>A YARA hit in physical memory (linux.yarascan.physical, windows.yarascan.physical).</summary>
/// <param name="Rule">The rule.</param>
/// <param name="String">The string identifier.</param>
/// <param name="PhysicalAddress">Where the match starts.</param>
/// <param name="Length">Its length.</param>
/// <param name="Preview">Its first bytes as printable ASCII.</param>
public sealed record YaraPhysicalHit(string Rule, string String, [property: Hex] ulong PhysicalAddress, int Length, string Preview);

/// <summary>
/// Runs compiled rules over an address range in chunks that overlap, so a match across a chunk boundary is found once.
/// Pages that cannot be read are scanned as zeros.
/// </summary>
public static class YaraScan
{
    /// <summary>Bytes per scanned chunk.</summary>
    public const int Chunk = 16 << 20;

    /// <summary>Bytes the chunks overlap: the longest match found across a boundary.</summary>
    public const int Overlap = 64 << 10;

    private const int Page = 4096;

    /// <summary>Reads one page (at most 4 KiB, never across a page) into the span; returns the bytes read.</summary>
    public delegate int PageReader(ulong address, Span<byte> page);

    /// <summary>Scans [start, end) and calls <paramref name="hit"/> with each match's address, once per match.</summary>
    /// <returns>The bytes that were readable.</returns>
    public static ulong Range(YaraRules rules, ulong start, ulong end, PageReader read, Action<YaraMatch, ulong, ReadOnlySpan<byte>> hit, CancellationToken ct)
    {
        ArgumentNullException.ThrowIfNull(rules);
        ArgumentNullException.ThrowIfNull(read);
        ArgumentNullException.ThrowIfNull(hit);
        byte[] buffer = new byte[Chunk + Overlap];
        ulong present = 0;
        for (ulong at = start; at < end; at += Chunk)
        {
            ct.ThrowIfCancellationRequested();
            int length = (int)Math.Min((ulong)buffer.Length, end - at);
            bool last = end - at <= (ulong)buffer.Length;
            bool any = false;
            for (int page = 0; page < length;)
            {
                int n = Math.Min(Page - (int)((at + (ulong)page) % Page), length - page);
                Span<byte> target = buffer.AsSpan(page, n);
                int got = Math.Clamp(read(at + (ulong)page, target), 0, n);
                target[got..].Clear();
                any |= got > 0;
                present += page < Chunk || last ? (ulong)got : 0; // the overlap is counted by the next chunk
                page += n;
            }
            if (!any)
            {
                continue;
            }
            foreach (YaraMatch m in rules.Scan(buffer.AsSpan(0, length)))
            {
                if (m.Offset >= 0 && (m.Offset < Chunk || last) && m.Offset < length)
                {
                    hit(m, at + (ulong)m.Offset, buffer.AsSpan((int)m.Offset, Math.Min(m.Length, length - (int)m.Offset)));
                }
            }
            if (last)
            {
                break;
            }
        }
        return present;
    }

    /// <summary>*.yarascan.physical: every run of the capture's physical memory.</summary>
    public static RowsReport<YaraPhysicalHit> Physical(IPhysicalMemory memory, string rulePath, string name = "linux.yarascan.physical", CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(memory);
        using YaraRules rules = YaraRules.Compile(rulePath);
        var rows = new List<YaraPhysicalHit>();
        var notes = new List<string>();
        int max = AnalysisLimits.Default.MaxScanResults;
        foreach (PhysicalRun run in memory.Runs)
        {
            Range(rules, run.PhysicalAddress, run.End, memory.Read, (m, address, bytes) =>
            {
                if (rows.Count < max)
                {
                    rows.Add(new YaraPhysicalHit(m.Rule, m.String, address, m.Length, YaraRules.Preview(bytes)));
                }
            }, ct);
        }
        if (rows.Count >= max)
        {
            notes.Add($"more than {max} hits: the rest are not shown");
        }
        notes.Add($"rules: {string.Join(", ", rules.Files)}");
        rows.Sort((x, y) => x.PhysicalAddress.CompareTo(y.PhysicalAddress));
        return new RowsReport<YaraPhysicalHit>(name, rows, notes);
    }

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (one file per plugin set, no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        // The same scan under both OS prefixes: physical memory needs no kernel, so neither locates one.
        foreach ((string os, TargetOs target) in new[] { ("linux", TargetOs.Linux), ("windows", TargetOs.Windows) })
        {
            PluginRegistry.Register(new PluginInfo($"{os}.yarascan.physical", "YARA rules (--yara FILE|DIR, via libyara) over all physical memory, no kernel needed: rule, string, physical address",
                target, PluginInputs.YaraRules), (c, a, ct) => Physical(c.Memory, a.YaraRules!, $"{os}.yarascan.physical", ct));
        }
    }
}
