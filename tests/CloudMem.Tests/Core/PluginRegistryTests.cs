using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Core;

/// <summary>The registry is the one list of plugins: the CLI, --help and the docs are made from it.</summary>
public sealed class PluginRegistryTests
{
    private const string Begin = "<!-- plugins:begin (generated from PluginRegistry by PluginRegistryTests; CLOUDMEM_ACCEPT_DOCS=1 rewrites) -->";
    private const string End = "<!-- plugins:end -->";

    [Fact]
    public void Names_are_volatility_style_and_descriptions_are_one_line()
    {
        IReadOnlyList<IPlugin> plugins = PluginRegistry.All;
        Assert.True(plugins.Count >= 32, $"only {plugins.Count} plugins registered");
        foreach (IPlugin plugin in plugins)
        {
            PluginInfo info = plugin.Info;
            Assert.Matches(@"^(linux|windows)\.[a-z0-9_.]+$", info.Name);
            Assert.StartsWith(info.Os.ToString().ToLowerInvariant() + ".", info.Name, StringComparison.Ordinal);
            Assert.False(string.IsNullOrWhiteSpace(info.Description), info.Name);
            Assert.DoesNotContain('\n', info.Description);
        }
    }

    [Fact]
    public void Inputs_a_plugin_does_not_take_are_refused_with_a_reason()
    {
        PluginInfo lsmod = PluginRegistry.Get("linux.lsmod").Info;
        Assert.Contains("does not take --pid", PluginRegistry.Validate(lsmod, new PluginArguments { Pids = new HashSet<long> { 1 } }), StringComparison.Ordinal);
        Assert.Contains("does not take --out", PluginRegistry.Validate(lsmod, new PluginArguments { OutputDirectory = "/tmp" }), StringComparison.Ordinal);
        PluginInfo procdump = PluginRegistry.Get("linux.procdump").Info;
        Assert.Contains("exactly one --pid", PluginRegistry.Validate(procdump, new PluginArguments { OutputDirectory = "/tmp" }), StringComparison.Ordinal);
        Assert.Contains("--out DIR is required", PluginRegistry.Validate(procdump, new PluginArguments { Pids = new HashSet<long> { 1 } }), StringComparison.Ordinal);
        Assert.Null(PluginRegistry.Validate(PluginRegistry.Get("windows.dlldump").Info,
            new PluginArguments { OutputDirectory = "/tmp", BaseAddress = 0x7FF0000, Pids = new HashSet<long> { 4 } }));
        var unknown = Assert.Throws<ArgumentException>(() => PluginRegistry.Get("linux.pslst"));
        Assert.Contains("did you mean linux.pslist?", unknown.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_plugin_registered_from_outside_runs_through_the_same_registry()
    {
        var info = new PluginInfo("linux.test_registry_probe", "Counts the runs of the capture (test plugin)", TargetOs.Linux);
        PluginRegistry.Register(info, (c, a, ct) => new Engine.Plugins.RowsReport<ProbeRow>(info.Name, [new ProbeRow(c.Memory.Runs.Count, c.Memory.MaxAddress)]));
        Assert.Throws<InvalidOperationException>(() => PluginRegistry.Register(info, (c, a, ct) => throw new InvalidOperationException()));
        using var dir = new TempDir();
        using VmStateParsers.RunMappedMemory memory = VmStateParsers.CaptureOpener.Open(dir.Write("zeros.raw", new byte[8192]));
        var report = (Engine.Plugins.IRowsReport)PluginRegistry.Get(info.Name).Run(new PluginContext(memory, "test"), PluginArguments.None, default);
        Assert.Equal(typeof(ProbeRow), report.RowType);
        Assert.Equal([true], report.Columns.Where(c => c.Name == nameof(ProbeRow.MaxAddress)).Select(c => c.Hex));
        using var text = new StringWriter();
        ReportWriter.Write(report, OutputFormat.Csv, text);
        Assert.Equal("table,Runs,MaxAddress\nlinux.test_registry_probe,1,0x2000\n", text.ToString().ReplaceLineEndings("\n"));
    }

    public sealed record ProbeRow(int Runs, [property: Hex] ulong MaxAddress);

    [Fact]
    public void The_docs_list_every_plugin_from_the_registry()
    {
        var table = new StringBuilder();
        table.AppendLine(Begin);
        table.AppendLine("| plugin | OS | inputs | what it answers |");
        table.AppendLine("|---|---|---|---|");
        foreach (IPlugin plugin in PluginRegistry.All.Where(p => !p.Info.Name.StartsWith("linux.test_", StringComparison.Ordinal)))
        {
            PluginInfo i = plugin.Info;
            var inputs = new List<string>();
            if ((i.Inputs & PluginInputs.SingleProcess) != 0)
            {
                inputs.Add("--pid (one)");
            }
            else if (i.TakesPids)
            {
                inputs.Add("--pid");
            }
            if ((i.Inputs & PluginInputs.OutputDirectory) != 0)
            {
                inputs.Add("--out DIR");
            }
            if ((i.Inputs & PluginInputs.BaseAddress) != 0)
            {
                inputs.Add("--base");
            }
            if ((i.Inputs & PluginInputs.RevealSecrets) != 0)
            {
                inputs.Add("--reveal");
            }
            if ((i.Inputs & PluginInputs.KeyPath) != 0)
            {
                inputs.Add("--key PATH");
            }
            if ((i.Inputs & PluginInputs.YaraRules) != 0)
            {
                inputs.Add("--yara FILE\\|DIR");
            }
            Assert.True(Enum.GetValues<PluginInputs>().Max() == PluginInputs.YaraRules, "a new PluginInputs flag needs its option name here");
            table.AppendLine($"| `{i.Name}` | {i.Os} | {string.Join(", ", inputs)} | {i.Description.Replace("|", "\\|", StringComparison.Ordinal)} |");
        }
        table.Append(End);
        string generated = table.ToString().ReplaceLineEndings("\n");
        var stale = new List<string>();
        foreach (string doc in new[] { "README.md", Path.Combine("docs", "ARCHITECTURE.md") })
        {
            string path = Path.Combine(Fixture.RepoRoot, doc);
            string text = File.ReadAllText(path).ReplaceLineEndings("\n");
            int begin = text.IndexOf(Begin, StringComparison.Ordinal);
            int end = text.IndexOf(End, StringComparison.Ordinal);
            Assert.True(begin >= 0 && end > begin, $"{doc} has no generated plugin table (markers {Begin} ... {End})");
            string current = text[begin..(end + End.Length)];
            if (current == generated)
            {
                continue;
            }
            if (Environment.GetEnvironmentVariable("CLOUDMEM_ACCEPT_DOCS") == "1")
            {
                File.WriteAllText(path, text[..begin] + generated + text[(end + End.Length)..]);
                continue;
            }
            stale.Add(doc);
        }
        Assert.True(stale.Count == 0, $"the plugin table in {string.Join(", ", stale)} differs from the registry: run the tests with CLOUDMEM_ACCEPT_DOCS=1 to rewrite it");
    }
}
