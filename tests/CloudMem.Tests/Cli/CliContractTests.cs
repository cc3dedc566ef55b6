using System.Text.Json;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Cli;

/// <summary>Issue 10's CLI contract, point by point: --pid everywhere, notes in every format, truncation, devices.</summary>
public sealed class CliContractTests(WindowsAttackImages images) : IClassFixture<WindowsAttackImages>
{
    [SkippableFact]
    public void Pid_filters_every_linux_plugin_that_takes_it()
    {
        string image = Fixture.Require("memory.lime");
        using RunMappedMemory memory = CaptureOpener.Open(image);
        var context = new PluginContext(memory, image);
        AssertPidFilter(context, TargetOs.Linux, 1);
    }

    [SkippableFact]
    public void Pid_filters_every_windows_plugin_that_takes_it()
    {
        WindowsAttackImages.Built built = images.Get(WindowsSymbols.Win10);
        using RunMappedMemory memory = CaptureOpener.Open(built.Raw);
        var context = new PluginContext(memory, built.Raw, new SymbolOptions([built.Root]));
        AssertPidFilter(context, TargetOs.Windows, 6044);
    }

    private static void AssertPidFilter(PluginContext context, TargetOs os, long pid)
    {
        using var output = new TempDir();
        int checkedPlugins = 0;
        string rules = Path.Combine(output.Path, "any.yar");
        File.WriteAllText(rules, "rule any_page { strings: $a = { 7F 45 4C 46 } condition: $a }\n"); // an ELF header
        foreach (IPlugin plugin in PluginRegistry.All.Where(p => p.Info.Os == os && p.Info.TakesPids))
        {
            PluginInfo info = plugin.Info;
            var arguments = new PluginArguments
            {
                Pids = new HashSet<long> { pid },
                OutputDirectory = (info.Inputs & PluginInputs.OutputDirectory) != 0 ? Directory.CreateDirectory(Path.Combine(output.Path, info.Name)).FullName : null,
                YaraRules = (info.Inputs & PluginInputs.YaraRules) != 0 ? rules : null,
            };
            IReport report;
            try
            {
                report = plugin.Run(context, arguments, default);
            }
            catch (KernelNotFoundException e) when (info.Name is "windows.netstat")
            {
                // The attack image has no tcpip.sys symbols on purpose; the network scenario tests netstat's filter.
                Assert.Contains("tcpip", e.Message, StringComparison.Ordinal);
                continue;
            }
            var rows = Assert.IsAssignableFrom<IRowsReport>(report);
            RowColumn? pidColumn = rows.Columns.FirstOrDefault(c => c.Name is "Pid") ?? rows.Columns.FirstOrDefault(c => c.Name is "Tgid");
            Assert.True(pidColumn is not null, $"{info.Name} takes --pid but its rows have no Pid column");
            foreach (object row in rows.BoxedRows)
            {
                object? value = pidColumn!.ValueOf(row);
                Assert.True(value is null || Convert.ToInt64(value, System.Globalization.CultureInfo.InvariantCulture) == pid
                    || info.Name.EndsWith("pstree", StringComparison.Ordinal), $"{info.Name}: row of pid {value} with --pid {pid}");
            }
            checkedPlugins++;
        }
        Assert.True(checkedPlugins >= 8, $"only {checkedPlugins} {os} plugins take --pid");
    }

    [Fact]
    public void Notes_reach_every_output_format()
    {
        var report = new RowsReport<NoteRow>("linux.test", [new NoteRow(1, 0xFFFF888000001000, null)], ["the list walk stopped there"]);
        string Render(OutputFormat format, TextWriter? diagnostics = null)
        {
            using var writer = new StringWriter();
            ReportWriter.Write(report, format, writer, diagnostics);
            return writer.ToString();
        }
        Assert.Contains("the list walk stopped there", Render(OutputFormat.Table), StringComparison.Ordinal);
        using (JsonDocument json = JsonDocument.Parse(Render(OutputFormat.Json)))
        {
            Assert.Equal("the list walk stopped there", json.RootElement.GetProperty("notes")[0].GetString());
            JsonElement row = json.RootElement.GetProperty("rows")[0];
            Assert.Equal("0xFFFF888000001000", row.GetProperty("offset").GetString());
            Assert.Equal(JsonValueKind.Null, row.GetProperty("doubt").ValueKind);
        }
        string[] lines = Render(OutputFormat.Jsonl).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(2, lines.Length);
        Assert.Equal("the list walk stopped there", JsonDocument.Parse(lines[1]).RootElement.GetProperty("note").GetString());
        using var stderr = new StringWriter();
        string csv = Render(OutputFormat.Csv, stderr);
        Assert.Equal("table,Pid,Offset,Doubt\nlinux.test,1,0xFFFF888000001000,-\n", csv.ReplaceLineEndings("\n"));
        Assert.Equal("note: the list walk stopped there", stderr.ToString().Trim());
    }

    public sealed record NoteRow(int Pid, [property: Hex] ulong Offset, string? Doubt);

    [SkippableTheory]
    [InlineData("memory.lime")]
    [InlineData("memory.elf")]
    [InlineData("memory.avml")]
    [InlineData("memory.kdump-zlib.flat")]
    [InlineData("memory.kdump-zlib")]
    public void A_truncated_capture_opens_and_info_says_what_is_missing(string file)
    {
        string source = Fixture.Require(file);
        using var dir = new TempDir();
        string cut = dir.File("cut-" + file);
        using (FileStream input = File.OpenRead(source))
        using (FileStream output = File.Create(cut))
        {
            byte[] buffer = new byte[input.Length / 2];
            input.ReadExactly(buffer);
            output.Write(buffer);
        }
        var (exit, stdout, stderr) = CliRunner.Run(null, null, "info", cut, "--no-banner");
        Assert.True(exit == 0, stderr);
        Assert.Contains("file is truncated", stdout, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Info_prints_phys_base_as_the_kernels_signed_hex()
    {
        string dump = Fixture.Require("memory.kdump-zlib");
        using JsonDocument truth = Fixture.Truth("basic");
        long physBase = unchecked((long)Convert.ToUInt64(truth.RootElement.GetProperty("kernel").GetProperty("kaslr").GetProperty("phys_base").GetString(), 16));
        string expected = physBase < 0 ? "-0x" + ((ulong)(-physBase)).ToString("X", System.Globalization.CultureInfo.InvariantCulture)
            : "0x" + physBase.ToString("X", System.Globalization.CultureInfo.InvariantCulture);
        var (exit, output, error) = CliRunner.Run(null, null, "info", dump, "--no-banner", "--output", "json");
        Assert.True(exit == 0, error);
        using JsonDocument info = JsonDocument.Parse(output);
        foreach (string? shown in new[] { info.RootElement.GetProperty("properties").GetProperty("physBase").GetString(),
            info.RootElement.GetProperty("vmcoreInfo").GetProperty("physBase").GetString() })
        {
            // The value, or the value and why the header's own field differs / the decimal VMCOREINFO text.
            Assert.True(shown == expected || shown!.StartsWith(expected + " (", StringComparison.Ordinal), $"{shown} is not {expected}");
        }
    }

    [Fact]
    public void A_device_is_named_as_one_and_an_unknown_format_has_no_exception_text()
    {
        var (exit, _, error) = CliRunner.Run(null, null, "info", "/dev/zero");
        Assert.Equal(2, exit);
        Assert.Contains("is a device or kernel file, not a capture file", error, StringComparison.Ordinal);
        (exit, _, error) = CliRunner.Run(null, null, "info", "/dev/zero", "--format", "foo");
        Assert.Equal(2, exit);
        Assert.DoesNotContain("Exception", error, StringComparison.Ordinal);
        Assert.DoesNotContain("Parameter", error, StringComparison.Ordinal);
        Assert.Single(error.Trim().Split('\n'));
    }
}
