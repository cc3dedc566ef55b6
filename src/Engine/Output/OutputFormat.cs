namespace CloudMem.Engine.Output;

/// <summary>How a command prints its result.</summary>
public enum OutputFormat
{
    /// <summary>Aligned text tables for people.</summary>
    Table,
    /// <summary>One indented JSON document.</summary>
    Json,
    /// <summary>JSON Lines: one compact object per row (or one per document when there are no rows).</summary>
    Jsonl,
    /// <summary>Comma-separated values, one block per table, first column the table name.</summary>
    Csv,
}

/// <summary>One titled table of text cells.</summary>
public sealed record TableSection(string Title, IReadOnlyList<string> Columns, IReadOnlyList<IReadOnlyList<string>> Rows);

/// <summary>A result that can print itself as tables and serialise itself as JSON.</summary>
public interface IReport
{
    /// <summary>The tables a person reads (also used for CSV).</summary>
    IEnumerable<TableSection> ToTables();

    /// <summary>The object serialised for JSON (lowerCamelCase properties).</summary>
    object ToJsonModel();

    /// <summary>Rows for JSON Lines; null to write the JSON model as a single line.</summary>
    IEnumerable<object>? ToJsonLines() => null;
}
