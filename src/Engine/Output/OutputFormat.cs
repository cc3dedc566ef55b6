namespace CloudMem.Engine.Output;

/// <summary>How a command prints its result.</summary>
public enum OutputFormat
{
    /// <summary>Aligned text tables for people.</summary>
    Table,
    /// <summary>One indented JSON document.</summary>
    Json,
    /// <summary>JSON Lines: one compact object per row, then one <c>{"note": ...}</c> per note (one line per document when there are no rows).</summary>
    Jsonl,
    /// <summary>Comma-separated values: one header and one line per row, first column the table name; notes go to the diagnostics stream.</summary>
    Csv,
}

/// <summary>One titled table of text cells.</summary>
public sealed record TableSection(string Title, IReadOnlyList<string> Columns, IReadOnlyList<IReadOnlyList<string>> Rows);

/// <summary>A result that can print itself as tables and serialise itself as JSON.</summary>
public interface IReport
{
    /// <summary>The tables a person reads.</summary>
    IEnumerable<TableSection> ToTables();

    /// <summary>The tables written as CSV (by default the same as <see cref="ToTables"/>).</summary>
    IEnumerable<TableSection> ToCsvTables() => ToTables();

    /// <summary>Remarks about the result (why a walk stopped, doubts); tables print them under the rows.</summary>
    IReadOnlyList<string> Notes => [];

    /// <summary>The object serialised for JSON (lowerCamelCase properties).</summary>
    object ToJsonModel();

    /// <summary>Rows for JSON Lines; null to write the JSON model as a single line.</summary>
    IEnumerable<object>? ToJsonLines() => null;
}
