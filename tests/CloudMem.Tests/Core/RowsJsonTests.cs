using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Core;

/// <summary>
/// The row JSON writer (no serializer reflection, for start-up time) prints byte for byte what System.Text.Json prints,
/// for every plugin's real rows: on the rootkit Linux fixture (hidden modules, hooks, hexdumps) and the Windows 10
/// attack image (injected code, hex columns, times, enums, lists), indented JSON and JSON Lines.
/// </summary>
public sealed class RowsJsonTests(WindowsAttackImages images) : IClassFixture<WindowsAttackImages>
{
    [SkippableFact]
    public void Linux_rows_are_written_exactly_as_the_serializer_writes_them()
    {
        string image = Fixture.Require("memory.raw", "rootkit");
        using RunMappedMemory memory = CaptureOpener.Open(image);
        Check(new PluginContext(memory, image), TargetOs.Linux, minimum: 30);
    }

    [Fact]
    public void Windows_rows_are_written_exactly_as_the_serializer_writes_them()
    {
        WindowsAttackImages.Built built = images.Get(WindowsSymbols.Win10);
        using RunMappedMemory memory = CaptureOpener.Open(built.Raw);
        Check(new PluginContext(memory, built.Raw, new SymbolOptions([built.Root])), TargetOs.Windows, minimum: 25);
    }

    private static void Check(PluginContext context, TargetOs os, int minimum)
    {
        using var output = new TempDir();
        var failures = new List<string>();
        int compared = 0, rows = 0;
        foreach (IPlugin plugin in PluginRegistry.All.Where(p => p.Info.Os == os))
        {
            PluginInputs inputs = plugin.Info.Inputs;
            if ((inputs & (PluginInputs.SingleProcess | PluginInputs.BaseAddress | PluginInputs.KeyPath | PluginInputs.YaraRules)) != 0)
            {
                continue;
            }
            PluginArguments arguments = (inputs & PluginInputs.OutputDirectory) != 0
                ? new PluginArguments { OutputDirectory = Directory.CreateDirectory(Path.Combine(output.Path, plugin.Info.Name)).FullName }
                : PluginArguments.None;
            IReport report;
            try
            {
                report = plugin.Run(context, arguments, default);
            }
            catch (Exception e) when (e is KernelNotFoundException or ArgumentException or InvalidOperationException)
            {
                continue;   // a plugin that needs what this capture lacks: nothing to print
            }
            if (report is not IRowsReport table)
            {
                continue;
            }
            compared++;
            rows += table.BoxedRows.Count;
            string fast = ReportWriter.Json(report, indented: true);
            string serializer = ReportWriter.SerializerJson(report, indented: true);
            if (fast != serializer)
            {
                failures.Add($"{plugin.Info.Name}: JSON differs at {FirstDifference(fast, serializer)}");
            }
            using var lines = new StringWriter();
            ReportWriter.Write(report, OutputFormat.Jsonl, lines);
            string expected = string.Concat(report.ToJsonLines()!.Select(l => ReportWriter.ToJson(l, indented: false) + Environment.NewLine));
            if (lines.ToString() != expected)
            {
                failures.Add($"{plugin.Info.Name}: JSON Lines differ at {FirstDifference(lines.ToString(), expected)}");
            }
        }
        Assert.True(failures.Count == 0, string.Join("\n", failures));
        Assert.True(compared >= minimum, $"only {compared} plugins gave rows to compare");
        Assert.True(rows > 100, $"only {rows} rows compared");
    }

    private static string FirstDifference(string a, string b)
    {
        int i = 0;
        while (i < a.Length && i < b.Length && a[i] == b[i])
        {
            i++;
        }
        int from = Math.Max(0, i - 60);
        return $"char {i}: ours ...{a[from..Math.Min(a.Length, i + 60)]}... serializer ...{b[from..Math.Min(b.Length, i + 60)]}...";
    }
}
