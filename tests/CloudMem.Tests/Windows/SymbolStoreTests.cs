using System.Diagnostics;
using System.Text.Json;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Windows;

/// <summary>Looking up a Windows kernel's ISF by PDB name, GUID and age, loading it, and the <c>symbols check</c>
/// command run as a process on a synthetic capture holding that kernel's PE header.</summary>
public sealed class SymbolStoreTests : IDisposable
{
    private const string Stem = PeImageBuilder.Win10Guid + "-1";
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>The real Windows 10 19041 ntkrnlmp ISF from shared/symbols (skips when absent).</summary>
    private static string RealTable() => SharedFiles.Require("symbols", "windows", "ntkrnlmp.pdb", Stem + ".json.xz");

    /// <summary>A symbols directory holding the real table as windows/<paramref name="pdbDir"/>/<paramref name="file"/> (a symlink).</summary>
    private string SymbolsDir(string name, string pdbDir = "ntkrnlmp.pdb", string file = Stem + ".json.xz")
    {
        string root = _dir.File(name);
        string dir = Path.Combine(root, "windows", pdbDir);
        Directory.CreateDirectory(dir);
        File.CreateSymbolicLink(Path.Combine(dir, file), RealTable());
        return root;
    }

    /// <summary>The paths tried in one directory: ISF (xz, plain), then the PDB in the symbol-server layout.</summary>
    private static string[] Expected(string root, string pdb = "ntkrnlmp.pdb")
        => [Path.Combine(root, "windows", pdb, Stem + ".json.xz"), Path.Combine(root, "windows", pdb, Stem + ".json"),
            Path.Combine(root, pdb, PeImageBuilder.Win10Guid + "1", pdb)];

    [SkippableFact]
    public void Finds_and_loads_the_table_of_the_kernel()
    {
        string root = SymbolsDir("symbols");
        var store = new SymbolStore([_dir.File("empty"), root]);

        SymbolLookup lookup = store.FindWindows("ntkrnlmp.pdb", PeImageBuilder.Win10Guid.ToLowerInvariant(), 1);

        Assert.True(lookup.Found);
        Assert.Equal(Expected(root)[0], lookup.Path);
        Assert.Equal([.. Expected(_dir.File("empty")), Expected(root)[0]], lookup.Tried);
        TypeModel model = IsfLoader.Load(lookup.Path!);
        Assert.True(model.TypeCount > 1000, $"{model.TypeCount} types");
        Assert.True(model.Symbols.Count > 1000, $"{model.Symbols.Count} symbols");
        Assert.NotNull(model.FindStruct("_EPROCESS"));
        Assert.True(model.Symbols.ContainsKey("PsActiveProcessHead"));
    }

    [SkippableFact]
    public void Guid_and_names_match_case_insensitively_and_plain_json_is_found()
    {
        string upperDir = SymbolsDir("upper", pdbDir: "NTKRNLMP.PDB", file: Stem.ToLowerInvariant() + ".json.xz");
        SymbolLookup lookup = new SymbolStore([upperDir]).FindWindows("ntkrnlmp.pdb", PeImageBuilder.Win10Guid, 1);
        Assert.Equal(Path.Combine(upperDir, "windows", "NTKRNLMP.PDB", Stem.ToLowerInvariant() + ".json.xz"), lookup.Path);

        string plain = _dir.File("plain");
        Directory.CreateDirectory(Path.Combine(plain, "windows", "ntkrnlmp.pdb"));
        File.WriteAllText(Path.Combine(plain, "windows", "ntkrnlmp.pdb", Stem + ".json"), "{}");
        lookup = new SymbolStore([plain]).FindWindows("ntkrnlmp.pdb", PeImageBuilder.Win10Guid, 1);
        Assert.Equal(Expected(plain)[1], lookup.Path);
        Assert.Equal(Expected(plain)[..2], lookup.Tried);
    }

    [Fact]
    public void A_miss_lists_every_path_tried_and_an_unreadable_directory_is_no_error()
    {
        string a = _dir.File("a");
        string b = _dir.File("b");
        Directory.CreateDirectory(Path.Combine(b, "windows", "ntkrnlmp.pdb"));
        File.WriteAllText(Path.Combine(b, "windows", "ntkrnlmp.pdb", PeImageBuilder.Win10Guid + "-2.json.xz"), "");   // other age

        SymbolLookup lookup = new SymbolStore([a, b, a]).FindWindows("ntkrnlmp.pdb", PeImageBuilder.Win10Guid, 1);

        Assert.False(lookup.Found);
        Assert.Equal([.. Expected(a), .. Expected(b)], lookup.Tried);
    }

    [Fact]
    public void The_user_cache_follows_XDG_CACHE_HOME()
    {
        string? saved = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        try
        {
            Environment.SetEnvironmentVariable("XDG_CACHE_HOME", _dir.Path);
            Assert.Equal(Path.Combine(_dir.Path, "cloudmem", "symbols"), SymbolStore.UserCacheDirectory());
            Assert.Equal([Path.GetFullPath("x"), Path.Combine(_dir.Path, "cloudmem", "symbols")], SymbolStore.WithUserCache(["x"]).Directories);
            Environment.SetEnvironmentVariable("XDG_CACHE_HOME", "relative/ignored");
            Assert.EndsWith(Path.Combine(".cache", "cloudmem", "symbols"), SymbolStore.UserCacheDirectory());
        }
        finally
        {
            Environment.SetEnvironmentVariable("XDG_CACHE_HOME", saved);
        }
    }

    private string WindowsCapture()
        => _dir.Write("win.raw", PeImageBuilder.RawCapture(4 << 20,
            (0x11000, new PeImageBuilder { PdbPath = "hal.pdb" }.Build()),
            (0x200000, new PeImageBuilder { PdbPath = @"d:\os\ntkrnlmp.pdb" }.Build())));

    [SkippableFact]
    public void Symbol_check_in_the_engine_reports_the_match()
    {
        string root = SymbolsDir("symbols");
        using RunMappedMemory memory = CaptureOpener.Open(WindowsCapture());

        SymbolCheckReport report = SymbolCheck.Run(memory, "win.raw", new SymbolStore([root]));

        Assert.True(report.AnyMatched);
        Assert.Null(report.FailureSummary);
        SymbolCheckRow row = Assert.Single(report.Kernels);
        Assert.Equal((0x200000ul, SymbolCheckStatus.Matched, Expected(root)[0]), (row.PhysicalAddress, row.Status, row.Path));
        Assert.StartsWith($"matched: {Expected(root)[0]} (", row.Result);
        Assert.Equal("hal.pdb", Assert.Single(report.OtherImages).PdbName);
    }

    /// <summary>cloudmem as a process with its per-user cache pointed at an empty temp directory.</summary>
    private (int Exit, string Out, string Err) Cli(params string[] args)
        => CliRunner.Run(new Dictionary<string, string> { ["XDG_CACHE_HOME"] = _dir.File("cache") }, null, args);

    [SkippableFact]
    public void Symbols_check_command_prints_matched()
    {
        string root = SymbolsDir("symbols");
        string capture = WindowsCapture();

        (int exit, string stdout, string stderr) = Cli("symbols", "check", capture, "--symbols", root);

        Assert.True(exit == 0, stderr);
        Assert.Equal("", stderr);
        string line = Assert.Single(stdout.Split('\n'), l => l.Contains("ntkrnlmp.pdb", StringComparison.Ordinal));
        Assert.Contains("0x200000", line);
        Assert.Contains(PeImageBuilder.Win10Guid, line);
        Assert.Contains($"matched: {Expected(root)[0]} (", line);
        Assert.Matches(@"\(\d+ types, \d+ symbols\)", line);

        (exit, stdout, _) = Cli("symbols", "check", capture, "--symbols", root, "--output", "json");
        Assert.Equal(0, exit);
        using JsonDocument json = JsonDocument.Parse(stdout);
        JsonElement kernel = json.RootElement.GetProperty("kernels")[0];
        Assert.Equal(PeImageBuilder.Win10Guid, kernel.GetProperty("guid").GetString());
        Assert.Equal(1, kernel.GetProperty("age").GetInt32());
        Assert.Equal("matched", kernel.GetProperty("status").GetString());
        Assert.True(kernel.GetProperty("types").GetInt32() > 1000);
        Assert.Equal("hal.pdb", json.RootElement.GetProperty("otherImages")[0].GetProperty("pdbName").GetString());
    }

    [Fact]
    public void Symbols_check_command_without_a_table_exits_2_naming_what_is_missing_and_where_it_looked()
    {
        string empty = _dir.File("empty");
        Directory.CreateDirectory(empty);
        string[] tried = [.. Expected(empty), .. Expected(Path.Combine(_dir.File("cache"), "cloudmem", "symbols"))];

        (int exit, string stdout, string stderr) = Cli("symbols", "check", WindowsCapture(), "--symbols", empty);

        Assert.Equal(2, exit);
        string error = Assert.Single(stderr.TrimEnd('\n').Split('\n'));
        Assert.StartsWith("cloudmem: error: ", error);
        string line = Assert.Single(stdout.Split('\n'), l => l.Contains("missing:", StringComparison.Ordinal));
        foreach (string text in new[] { $"missing: no table for ntkrnlmp.pdb {Stem}; looked in: {string.Join(", ", tried)}" })
        {
            Assert.Contains(text, line);
            Assert.Contains(text, error);
        }
    }

    [SkippableFact]
    public void Symbols_check_command_on_the_Linux_capture_says_no_Windows_kernel()
    {
        string raw = Fixture.Require("memory.raw");
        (int exit, _, string stderr) = Cli("symbols", "check", raw);
        Assert.Equal(2, exit);
        Assert.StartsWith("cloudmem: error: no Windows x64 kernel image", Assert.Single(stderr.TrimEnd('\n').Split('\n')));
    }
}
