using System.Globalization;
using System.Reflection;
using System.Text.Json;
using System.Text.RegularExpressions;
using CloudMem.Engine.Core;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Analysis;

/// <summary>A rule file that does not load: one line naming the file, the rule and what is wrong.</summary>
public sealed class RuleException(string message) : Exception(message);

/// <summary>
/// One triage rule, loaded from a JSON rule file and checked against the plugin registry and the row type of the
/// plugin it names (see <see cref="TriageRules"/> for the file format).
/// </summary>
public sealed class TriageRule
{
    internal TriageRule(string file, string id, string title, Severity severity, string technique, double confidence, string summary,
        RuleCondition condition, RuleJoin? join, IReadOnlyList<string> subject)
    {
        File = file;
        Id = id;
        Title = title;
        Severity = severity;
        Technique = technique;
        Confidence = confidence;
        Summary = summary;
        Condition = condition;
        Join = join;
        Subject = subject;
    }

    /// <summary>The file the rule came from (<c>builtin:linux.json</c> for shipped rules).</summary>
    public string File { get; }

    /// <summary>The rule id (unique across every loaded file).</summary>
    public string Id { get; }

    /// <summary>The title.</summary>
    public string Title { get; }

    /// <summary>How bad a match is.</summary>
    public Severity Severity { get; }

    /// <summary>The MITRE ATT&amp;CK technique id, or <c>-</c> when the condition names none (YARA hits).</summary>
    public string Technique { get; }

    /// <summary>How sure a match is, 0 to 1.</summary>
    public double Confidence { get; }

    /// <summary>The summary template: <c>{Column}</c> is the matched row's value, <c>{join.Column}</c> the joined row's.</summary>
    public string Summary { get; }

    /// <summary>The plugin whose rows the rule reads.</summary>
    public string Plugin => Condition.Plugin;

    internal RuleCondition Condition { get; }

    internal RuleJoin? Join { get; }

    internal IReadOnlyList<string> Subject { get; }
}

/// <summary>Rows of one plugin that satisfy every predicate.</summary>
internal sealed record RuleCondition(string Plugin, Type RowType, IReadOnlyList<RulePredicate> Where)
{
    public bool Matches(IRowsReport table, object row) => Where.All(p => p.Matches(table, row));
}

/// <summary>The second plugin of a correlation: a row of it whose <see cref="RightColumn"/> equals the first row's <see cref="LeftColumn"/>.</summary>
internal sealed record RuleJoin(RuleCondition Condition, string LeftColumn, string RightColumn);

/// <summary>One column test.</summary>
internal sealed record RulePredicate(string Column, string Op, object? Value, Regex? Pattern)
{
    public bool Matches(IRowsReport table, object row)
    {
        RowColumn column = table.Columns.First(c => c.Name == Column);
        object? value = column.ValueOf(row);
        return Op switch
        {
            "null" => value is null,
            "notnull" => value is not null,
            "true" => value is true,
            "false" => value is false,
            "regex" => value is not null && Pattern!.IsMatch(column.CellOf(row)),
            "eq" => value is not null && RuleValues.Equal(value, Value),
            "ne" => value is null || !RuleValues.Equal(value, Value),
            "in" => value is not null && ((IReadOnlyList<object>)Value!).Any(v => RuleValues.Equal(value, v)),
            "notin" => value is not null && !((IReadOnlyList<object>)Value!).Any(v => RuleValues.Equal(value, v)),
            "gt" => value is not null && RuleValues.Compare(value, Value!) > 0,
            "lt" => value is not null && RuleValues.Compare(value, Value!) < 0,
            "mask" => value is not null && (RuleValues.Bits(value) & RuleValues.Bits(Value!)) != 0,
            _ => false,
        };
    }
}

/// <summary>
/// Loads triage rules: the rule files shipped in this assembly (<c>Rules/linux.json</c>, <c>Rules/windows.json</c>)
/// and the <c>*.json</c> files of a user directory. A file is <c>{"rules": [RULE, ...]}</c>; a rule is
/// <code>
/// { "id": "CM-LNX-001", "title": "...", "severity": "info|low|medium|high|critical", "technique": "T1014",
///   "confidence": 0.9, "summary": "Module {Name} ...",
///   "plugin": "linux.hidden_modules", "where": [ { "column": "Hidden", "op": "true" } ],
///   "join": { "plugin": "linux.pslist", "on": "Pid", "rightOn": "Pid", "where": [ ... ] },
///   "subject": ["Name"] }
/// </code>
/// Predicates (all must hold): <c>eq</c>, <c>ne</c> (value), <c>in</c>, <c>notin</c> (array), <c>regex</c> (pattern,
/// over the value as tables print it: hex for hex columns), <c>gt</c>, <c>lt</c> (numbers or times), <c>mask</c>
/// (some bit of the value set), <c>true</c>, <c>false</c>, <c>null</c>, <c>notnull</c>. Numbers may be written as
/// JSON numbers or <c>"0x..."</c>; enum columns compare by name (any case); times as ISO 8601 text. <c>join</c>
/// correlates a second plugin on a column (a process id): the rule matches a row of <c>plugin</c> when some row of
/// the joined plugin has the same value and satisfies the join's predicates. One finding per rule and subject:
/// <c>subject</c> columns when given, else the row's <c>Pid</c>, else its row key.
/// Every name is checked at load: an unknown plugin, column, operator, enum name or placeholder is a
/// <see cref="RuleException"/> of one line naming the file, the rule id and the column.
/// </summary>
public static class TriageRules
{
    private static readonly string[] s_ops = ["eq", "ne", "in", "notin", "regex", "gt", "lt", "mask", "true", "false", "null", "notnull"];
    private static readonly Regex s_placeholder = new(@"\{(?:(join)\.)?([A-Za-z][A-Za-z0-9]*)\}", RegexOptions.CultureInvariant);

    /// <summary>The rules shipped in the engine for <paramref name="os"/> (<c>linux</c> or <c>windows</c>).</summary>
    public static IReadOnlyList<TriageRule> BuiltIn(TargetOs os)
    {
        string name = os == TargetOs.Windows ? "windows.json" : "linux.json";
        Assembly assembly = typeof(TriageRules).Assembly;
        using Stream stream = assembly.GetManifestResourceStream("CloudMem.Engine.Analysis.Rules." + name)
            ?? throw new InvalidOperationException($"the engine has no embedded rule file {name}");
        using var reader = new StreamReader(stream);
        return Parse("builtin:" + name, reader.ReadToEnd());
    }

    /// <summary>The rules of every <c>*.json</c> file of <paramref name="directory"/>, in file name order.</summary>
    /// <exception cref="RuleException">A file does not parse or a rule does not check.</exception>
    public static IReadOnlyList<TriageRule> FromDirectory(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (!Directory.Exists(directory))
        {
            throw new RuleException($"--rules {directory}: not a directory");
        }
        var rules = new List<TriageRule>();
        foreach (string file in Directory.EnumerateFiles(directory, "*.json").Order(StringComparer.Ordinal))
        {
            rules.AddRange(Parse(file, File.ReadAllText(file)));
        }
        return rules;
    }

    /// <summary><paramref name="sets"/> together; a rule id defined twice is a <see cref="RuleException"/>.</summary>
    public static IReadOnlyList<TriageRule> Combine(params IEnumerable<TriageRule>[] sets)
    {
        ArgumentNullException.ThrowIfNull(sets);
        var all = new List<TriageRule>();
        var ids = new Dictionary<string, TriageRule>(StringComparer.Ordinal);
        foreach (TriageRule rule in sets.SelectMany(s => s))
        {
            if (ids.TryGetValue(rule.Id, out TriageRule? first))
            {
                throw new RuleException($"{rule.File}: rule {rule.Id}: id already defined in {first.File}");
            }
            ids[rule.Id] = rule;
            all.Add(rule);
        }
        return all;
    }

    /// <summary>Parses and checks the rules of one file's text.</summary>
    /// <exception cref="RuleException">The text does not parse or a rule does not check.</exception>
    public static IReadOnlyList<TriageRule> Parse(string file, string json)
    {
        ArgumentNullException.ThrowIfNull(file);
        ArgumentNullException.ThrowIfNull(json);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
        }
        catch (JsonException e)
        {
            throw new RuleException($"{file}: not JSON: {e.Message.ReplaceLineEndings(" ")}");
        }
        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object || !document.RootElement.TryGetProperty("rules", out JsonElement list)
                || list.ValueKind != JsonValueKind.Array)
            {
                throw new RuleException($"{file}: expected {{\"rules\": [...]}}");
            }
            var rules = new List<TriageRule>();
            int index = 0;
            foreach (JsonElement element in list.EnumerateArray())
            {
                rules.Add(ParseRule(file, element, index++));
            }
            return Combine(rules);
        }
    }

    private static TriageRule ParseRule(string file, JsonElement e, int index)
    {
        string where = $"{file}: rule #{index + 1}";
        if (e.ValueKind != JsonValueKind.Object)
        {
            throw new RuleException($"{where}: not an object");
        }
        string id = Text(e, "id", where);
        where = $"{file}: rule {id}";
        string title = Text(e, "title", where);
        string severityText = Text(e, "severity", where);
        if (!Enum.TryParse(severityText, ignoreCase: true, out Severity severity) || int.TryParse(severityText, out _))
        {
            throw new RuleException($"{where}: severity '{severityText}' is not info, low, medium, high or critical");
        }
        string technique = Text(e, "technique", where);
        if (technique != "-" && !Regex.IsMatch(technique, @"^T\d{4}(\.\d{3})?$", RegexOptions.CultureInvariant))
        {
            throw new RuleException($"{where}: technique '{technique}' is not an ATT&CK id (T1234 or T1234.001) or -");
        }
        double confidence = e.TryGetProperty("confidence", out JsonElement c) && c.ValueKind == JsonValueKind.Number ? c.GetDouble()
            : throw new RuleException($"{where}: confidence (a number from 0 to 1) is missing");
        if (confidence is < 0 or > 1)
        {
            throw new RuleException($"{where}: confidence {confidence.ToString(CultureInfo.InvariantCulture)} is not between 0 and 1");
        }
        string summary = Text(e, "summary", where);
        RuleCondition condition = Condition(e, where, "");
        RuleJoin? join = null;
        if (e.TryGetProperty("join", out JsonElement j))
        {
            RuleCondition right = Condition(j, where, "join ");
            string on = Text(j, "on", where + " join");
            string rightOn = j.TryGetProperty("rightOn", out JsonElement r) && r.ValueKind == JsonValueKind.String ? r.GetString()! : on;
            Column(condition, on, where);
            Column(right, rightOn, where + " join");
            join = new RuleJoin(right, on, rightOn);
        }
        var subject = new List<string>();
        if (e.TryGetProperty("subject", out JsonElement s))
        {
            if (s.ValueKind != JsonValueKind.Array || s.EnumerateArray().Any(x => x.ValueKind != JsonValueKind.String))
            {
                throw new RuleException($"{where}: subject must be an array of column names");
            }
            foreach (JsonElement name in s.EnumerateArray())
            {
                Column(condition, name.GetString()!, where);
                subject.Add(name.GetString()!);
            }
        }
        foreach (Match m in s_placeholder.Matches(summary))
        {
            if (m.Groups[1].Success && join is null)
            {
                throw new RuleException($"{where}: summary uses {m.Value} but the rule has no join");
            }
            Column(m.Groups[1].Success ? join!.Condition : condition, m.Groups[2].Value, where + " summary");
        }
        return new TriageRule(file, id, title, severity, technique, confidence, summary, condition, join, subject);
    }

    private static RuleCondition Condition(JsonElement e, string where, string part)
    {
        string plugin = Text(e, "plugin", where + (part.Length == 0 ? "" : " " + part.Trim()));
        if (!PluginRegistry.TryGet(plugin, out _))
        {
            string? closest = Spelling.Closest(plugin, PluginRegistry.All.Select(p => p.Info.Name));
            throw new RuleException($"{where}: {part}plugin '{plugin}' is not a plugin" + (closest is null ? "" : $" (did you mean {closest}?)"));
        }
        if (!PluginTables.TryGetRowType(plugin, out Type rowType))
        {
            throw new RuleException($"{where}: {part}plugin {plugin} has no typed rows rules can read");
        }
        var condition = new RuleCondition(plugin, rowType, []);
        var predicates = new List<RulePredicate>();
        if (e.TryGetProperty("where", out JsonElement list))
        {
            if (list.ValueKind != JsonValueKind.Array)
            {
                throw new RuleException($"{where}: {part}where must be an array of predicates");
            }
            foreach (JsonElement p in list.EnumerateArray())
            {
                predicates.Add(Predicate(condition, p, $"{where}{(part.Length == 0 ? "" : " " + part.Trim())}"));
            }
        }
        return condition with { Where = predicates };
    }

    private static RulePredicate Predicate(RuleCondition condition, JsonElement p, string where)
    {
        string columnName = Text(p, "column", where);
        PropertyInfo column = Column(condition, columnName, where);
        string op = Text(p, "op", $"{where} column {columnName}");
        if (!s_ops.Contains(op))
        {
            throw new RuleException($"{where}: column {columnName}: op '{op}' is not one of {string.Join(", ", s_ops)}");
        }
        Type type = Nullable.GetUnderlyingType(column.PropertyType) ?? column.PropertyType;
        string at = $"{where}: column {columnName} ({condition.Plugin})";
        if (op is "null" or "notnull")
        {
            return new RulePredicate(columnName, op, null, null);
        }
        if (op is "true" or "false")
        {
            return type == typeof(bool) ? new RulePredicate(columnName, op, null, null) : throw new RuleException($"{at}: op {op} needs a yes/no column, not {type.Name}");
        }
        JsonElement value = p.TryGetProperty("value", out JsonElement v) ? v : throw new RuleException($"{at}: op {op} needs a value");
        switch (op)
        {
            case "regex":
                try
                {
                    return new RulePredicate(columnName, op, null, new Regex(value.GetString() ?? "", RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1)));
                }
                catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
                {
                    throw new RuleException($"{at}: regex does not parse: {ex.Message.ReplaceLineEndings(" ")}");
                }
            case "in" or "notin":
                return value.ValueKind == JsonValueKind.Array
                    ? new RulePredicate(columnName, op, value.EnumerateArray().Select(x => RuleValues.Convert(x, type, at)).ToList(), null)
                    : throw new RuleException($"{at}: op {op} needs an array value");
            case "gt" or "lt":
                if (!RuleValues.IsOrdered(type))
                {
                    throw new RuleException($"{at}: op {op} needs a number or time column, not {type.Name}");
                }
                return new RulePredicate(columnName, op, RuleValues.Convert(value, type, at), null);
            case "mask":
                return RuleValues.IsInteger(type)
                    ? new RulePredicate(columnName, op, RuleValues.Convert(value, type, at), null)
                    : throw new RuleException($"{at}: op mask needs an integer column, not {type.Name}");
            default:
                return new RulePredicate(columnName, op, RuleValues.Convert(value, type, at), null);
        }
    }

    private static PropertyInfo Column(RuleCondition condition, string name, string where)
    {
        PropertyInfo[] properties = condition.RowType.GetProperties(BindingFlags.Public | BindingFlags.Instance);
        PropertyInfo? property = properties.FirstOrDefault(p => p.Name == name);
        if (property is null)
        {
            string? closest = Spelling.Closest(name, properties.Select(p => p.Name));
            throw new RuleException($"{where}: column '{name}' is not a column of {condition.Plugin}" + (closest is null ? "" : $" (did you mean {closest}?)"));
        }
        return property;
    }

    private static string Text(JsonElement e, string name, string where)
        => e.TryGetProperty(name, out JsonElement v) && v.ValueKind == JsonValueKind.String && v.GetString() is { Length: > 0 } s
            ? s
            : throw new RuleException($"{where}: {name} (a non-empty string) is missing");
}
