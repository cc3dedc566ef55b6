using System.Text;

namespace CloudMem.Engine.Analysis.Reports;

/// <summary>Writes both human reports of a case into its directory.</summary>
public static class CaseReports
{
    /// <summary>The HTML report's file name.</summary>
    public const string HtmlFileName = "report.html";

    /// <summary>The Markdown report's file name.</summary>
    public const string MarkdownFileName = "report.md";

    /// <summary>
    /// Writes <see cref="HtmlFileName"/> (<see cref="HtmlReport"/>) and <see cref="MarkdownFileName"/>
    /// (<see cref="MarkdownReport"/>) into <paramref name="directory"/> (which must exist), UTF-8 without BOM. Never
    /// overwrites: both names are checked first, then each file is created with <see cref="FileMode.CreateNew"/>.
    /// </summary>
    /// <exception cref="IOException">One of the files exists already (nothing is written then, unless it appeared
    /// between the check and the write), or the directory is not writable.</exception>
    /// <exception cref="DirectoryNotFoundException">The directory does not exist.</exception>
    public static void WriteAll(CaseReport report, string directory)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentException.ThrowIfNullOrEmpty(directory);
        if (!Directory.Exists(directory))
        {
            throw new DirectoryNotFoundException($"{directory}: the case directory does not exist");
        }
        string html = Path.Combine(directory, HtmlFileName);
        string markdown = Path.Combine(directory, MarkdownFileName);
        foreach (string path in (string[])[html, markdown])
        {
            if (File.Exists(path) || Directory.Exists(path))
            {
                throw new IOException($"{path}: exists already; reports are never overwritten");
            }
        }
        Write(html, w => HtmlReport.Write(report, w));
        Write(markdown, w => MarkdownReport.Write(report, w));
    }

    private static void Write(string path, Action<TextWriter> write)
    {
        using var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.None);
        using var writer = new StreamWriter(stream, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false));
        write(writer);
    }
}
