using System.Globalization;
using System.Text.RegularExpressions;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Analysis;

/// <summary>
/// Applies triage rules to the rows of the plugins that ran: one finding per rule and subject (a process, a module,
/// a syscall slot...), with every matching row as evidence (up to <see cref="MaxEvidence"/>), most severe first.
/// A rule whose plugin did not run (not applicable, failed) yields nothing.
/// </summary>
public static class RuleEngine
{
    /// <summary>At most this many evidence rows per finding (the rest are counted in the summary).</summary>
    public const int MaxEvidence = 50;

    private static readonly Regex s_placeholder = new(@"\{(?:(join)\.)?([A-Za-z][A-Za-z0-9]*)\}", RegexOptions.CultureInvariant);
    private static readonly string[] s_nameColumns = ["ImageFileName", "Process", "Comm", "Owner"];

    /// <summary>The findings of <paramref name="rules"/> over <paramref name="tables"/>, most severe first.</summary>
    public static IReadOnlyList<Finding> Evaluate(IReadOnlyList<TriageRule> rules, IReadOnlyList<IRowsReport> tables)
    {
        ArgumentNullException.ThrowIfNull(rules);
        ArgumentNullException.ThrowIfNull(tables);
        var byPlugin = new Dictionary<string, (IRowsReport Table, IReadOnlyList<string> Keys)>(StringComparer.Ordinal);
        foreach (IRowsReport table in tables)
        {
            if (PluginTables.TryGetRowType(table.Title, out Type rowType) && rowType == table.RowType)
            {
                byPlugin[table.Title] = (table, PluginTables.Keys(table));
            }
        }
        var findings = new List<Finding>();
        foreach (TriageRule rule in rules)
        {
            findings.AddRange(Apply(rule, byPlugin));
        }
        return [.. findings.OrderByDescending(f => f.Severity).ThenBy(f => f.RuleId, StringComparer.Ordinal).ThenBy(f => f.Pid ?? long.MaxValue)
            .ThenBy(f => f.Summary, StringComparer.Ordinal)];
    }

    private static IEnumerable<Finding> Apply(TriageRule rule, Dictionary<string, (IRowsReport Table, IReadOnlyList<string> Keys)> tables)
    {
        if (!tables.TryGetValue(rule.Plugin, out (IRowsReport Table, IReadOnlyList<string> Keys) left))
        {
            yield break;
        }
        (IRowsReport Table, IReadOnlyList<string> Keys) right = default;
        ILookup<object, int>? joined = null;
        if (rule.Join is { } join)
        {
            if (!tables.TryGetValue(join.Condition.Plugin, out right))
            {
                yield break;
            }
            RowColumn on = right.Table.Columns.First(c => c.Name == join.RightColumn);
            IReadOnlyList<object> rows = right.Table.BoxedRows;
            joined = Enumerable.Range(0, rows.Count)
                .Where(i => on.ValueOf(rows[i]) is not null && join.Condition.Matches(right.Table, rows[i]))
                .ToLookup(i => RuleValues.Normal(on.ValueOf(rows[i])!));
        }
        var subjects = new Dictionary<string, Builder>(StringComparer.Ordinal);
        var order = new List<string>();
        IReadOnlyList<object> leftRows = left.Table.BoxedRows;
        for (int i = 0; i < leftRows.Count; i++)
        {
            object row = leftRows[i];
            if (!rule.Condition.Matches(left.Table, row))
            {
                continue;
            }
            int[] partners = [];
            if (joined is not null)
            {
                object? key = left.Table.Columns.First(c => c.Name == rule.Join!.LeftColumn).ValueOf(row);
                partners = key is null ? [] : [.. joined[RuleValues.Normal(key)]];
                if (partners.Length == 0)
                {
                    continue;
                }
            }
            string subject = Subject(rule, left.Table, row, left.Keys[i]);
            if (!subjects.TryGetValue(subject, out Builder? builder))
            {
                builder = new Builder(rule, left.Table, row, partners.Length == 0 ? null : right.Table!.BoxedRows[partners[0]], right.Table);
                subjects[subject] = builder;
                order.Add(subject);
            }
            builder.Add(new Evidence(rule.Plugin, left.Keys[i], row));
            foreach (int p in partners)
            {
                builder.Add(new Evidence(rule.Join!.Condition.Plugin, right.Keys![p], right.Table!.BoxedRows[p]));
            }
        }
        foreach (string subject in order)
        {
            yield return subjects[subject].Build();
        }
    }

    private static string Subject(TriageRule rule, IRowsReport table, object row, string key)
    {
        if (rule.Subject.Count > 0)
        {
            return string.Join(',', rule.Subject.Select(s => table.Columns.First(c => c.Name == s).CellOf(row)));
        }
        return Pid(table, row) is long pid ? "pid=" + pid.ToString(CultureInfo.InvariantCulture) : key;
    }

    private static long? Pid(IRowsReport table, object row)
        => table.Columns.FirstOrDefault(c => c.Name == "Pid")?.ValueOf(row) switch
        {
            int i => i,
            long l => l,
            _ => null,
        };

    private static string? Name(IRowsReport table, object row)
        => s_nameColumns.Select(n => table.Columns.FirstOrDefault(c => c.Name == n)?.ValueOf(row) as string).FirstOrDefault(s => !string.IsNullOrEmpty(s));

    /// <summary>Collects the evidence of one rule and subject.</summary>
    private sealed class Builder(TriageRule rule, IRowsReport table, object first, object? partner, IRowsReport? partnerTable)
    {
        private readonly List<Evidence> _evidence = [];
        private readonly HashSet<(string, string)> _seen = [];
        private int _more;

        public void Add(Evidence evidence)
        {
            if (!_seen.Add((evidence.Plugin, evidence.RowKey)))
            {
                return;
            }
            if (_evidence.Count < MaxEvidence)
            {
                _evidence.Add(evidence);
            }
            else
            {
                _more++;
            }
        }

        public Finding Build()
        {
            string summary = s_placeholder.Replace(rule.Summary, m =>
            {
                (IRowsReport t, object? r) = m.Groups[1].Success ? (partnerTable!, partner) : (table, first);
                return r is null ? "-" : t.Columns.First(c => c.Name == m.Groups[2].Value).CellOf(r);
            });
            if (_more > 0)
            {
                summary += $" (and {_more} more rows)";
            }
            long? pid = Pid(table, first) ?? (partner is null ? null : Pid(partnerTable!, partner));
            string? name = Name(table, first) ?? (partner is null ? null : Name(partnerTable!, partner));
            return new Finding(rule.Id, rule.Title, rule.Severity, rule.Technique, rule.Confidence, summary, pid, name, [.. _evidence]);
        }
    }
}
