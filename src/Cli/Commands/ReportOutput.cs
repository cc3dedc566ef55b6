using CloudMem.Engine.Output;

namespace CloudMem.Cli.Commands;

/// <summary>Writes a command's report to standard output.</summary>
internal static class ReportOutput
{
    /// <summary>
    /// <paramref name="report"/> in <paramref name="format"/> on stdout through a 64 KiB buffer, flushed before return:
    /// Console.Out writes through a 256-character buffer, one system call each (1,949 for windows.dlllist's JSON).
    /// </summary>
    public static void Write(IReport report, OutputFormat format, TextWriter? diagnostics = null)
    {
        using var output = new StreamWriter(Console.OpenStandardOutput(), new System.Text.UTF8Encoding(false), 1 << 16);
        ReportWriter.Write(report, format, output, diagnostics);
    }
}
