using System.Text;
using CloudMem.Engine.Output;

namespace CloudMem.Engine.Analysis;

/// <summary>An output directory <c>analyze</c> refuses (it exists and is not empty: a case is never overwritten).</summary>
public sealed class CaseDirectoryException(string message) : IOException(message);

/// <summary>
/// Writes a case directory: <c>case.sqlite</c> (<see cref="CaseDatabase"/>), <c>findings.jsonl</c> (one finding per
/// line with its evidence rows), <c>timeline.body</c> (<see cref="CaseTimeline.WriteBody"/>) and the two reports people
/// read, <c>report.html</c> and <c>report.md</c> (<see cref="Reports.CaseReports"/>), and the Parquet files fleet
/// queries read (<see cref="CaseParquet"/>: captures, findings, processes, connections, yara, runs). Every file is created
/// new: an existing non-empty directory is refused before anything is written, and no file is ever overwritten.
/// </summary>
public static class CaseWriter
{
    /// <summary>The case directory used without <c>--out</c>: <c>IMAGE.case</c> next to the image (for a custody manifest
    /// <c>NAME.custody.json</c>, <c>NAME.case</c> next to the manifest).</summary>
    public static string DefaultDirectory(string imageOrManifest)
    {
        ArgumentNullException.ThrowIfNull(imageOrManifest);
        string full = Path.GetFullPath(imageOrManifest);
        const string custody = ".custody.json";
        return full.EndsWith(custody, StringComparison.OrdinalIgnoreCase) ? full[..^custody.Length] + ".case" : full + ".case";
    }

    /// <summary>Creates <paramref name="directory"/>, or accepts it when it exists and is empty.</summary>
    /// <exception cref="CaseDirectoryException">It exists and holds something, or it is a file.</exception>
    public static void Prepare(string directory)
    {
        ArgumentNullException.ThrowIfNull(directory);
        if (File.Exists(directory))
        {
            throw new CaseDirectoryException($"{directory} is a file, not a case directory");
        }
        if (Directory.Exists(directory) && Directory.EnumerateFileSystemEntries(directory).Any())
        {
            throw new CaseDirectoryException($"{directory} exists and is not empty (a case is never overwritten; choose another --out)");
        }
        Directory.CreateDirectory(directory);
    }

    /// <summary>Writes the case files into <paramref name="directory"/> (prepared with <see cref="Prepare"/>); returns their paths.</summary>
    public static IReadOnlyList<string> Write(CaseReport report, string directory)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(directory);
        string findings = Path.Combine(directory, "findings.jsonl");
        using (var writer = new StreamWriter(new FileStream(findings, FileMode.CreateNew, FileAccess.Write), new UTF8Encoding(false)))
        {
            foreach (Finding f in report.Findings)
            {
                writer.Write(ReportWriter.ToJson(f, indented: false));
                writer.Write('\n');
            }
        }
        string body = Path.Combine(directory, "timeline.body");
        using (var writer = new StreamWriter(new FileStream(body, FileMode.CreateNew, FileAccess.Write), new UTF8Encoding(false)))
        {
            CaseTimeline.WriteBody(report.Timeline, writer);
        }
        string database = Path.Combine(directory, "case.sqlite");
        CaseDatabase.Write(report, database);
        Reports.CaseReports.WriteAll(report, directory);
        IReadOnlyList<string> parquet = CaseParquet.Write(report, directory);
        return [database, findings, body, Path.Combine(directory, Reports.CaseReports.HtmlFileName),
            Path.Combine(directory, Reports.CaseReports.MarkdownFileName), .. parquet];
    }
}
