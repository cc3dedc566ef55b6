using System.Diagnostics;
using System.Text.Json;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Cli;

/// <summary>The CLI as a user meets it: a separate process, its exit code, stdout and stderr.</summary>
public sealed class CliProcessTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    internal static (int Exit, string Out, string Err) Run(params string[] args) => RunAs(null, args);

    private static (int Exit, string Out, string Err) RunAs(string? user, params string[] args) => CliRunner.Run(null, user, args);

    private static void AssertOneLineError(int exit, string stderr, params string[] mustContain)
    {
        Assert.Equal(2, exit);
        string[] lines = stderr.TrimEnd('\n').Split('\n');
        Assert.Single(lines);
        Assert.StartsWith("cloudmem: ", lines[0], StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", stderr, StringComparison.Ordinal);
        foreach (string text in mustContain)
        {
            Assert.Contains(text, lines[0], StringComparison.Ordinal);
        }
    }

    [SkippableFact]
    public void Missing_file_directory_and_empty_file_are_one_line_errors()
    {
        (int exit, _, string err) = Run("info", _dir.File("missing.lime"));
        AssertOneLineError(exit, err, "missing.lime", "no such file");
        (exit, _, err) = Run("info", _dir.Path);
        AssertOneLineError(exit, err, "is a directory");
        (exit, _, err) = Run("info", _dir.Write("empty.raw", []));
        AssertOneLineError(exit, err, "empty.raw", "empty");
    }

    [SkippableFact]
    public void Unreadable_file_is_a_one_line_error()
    {
        Skip.IfNot(OperatingSystem.IsLinux(), "needs Unix file modes");
        string path = _dir.Write("secret.lime", CaptureBuilder.Lime((0, 0x1000)));
#pragma warning disable CA1416 // Linux only: guarded above
        File.SetUnixFileMode(path, UnixFileMode.None);
        File.SetUnixFileMode(_dir.Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute
            | UnixFileMode.OtherRead | UnixFileMode.OtherExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute);
#pragma warning restore CA1416
        (int exit, string err) result;
        if (Environment.UserName == "root")
        {
            // Root reads anything: drop to nobody for this one run.
            (int e, _, string r) = RunAs("65534", "info", path);
            result = (e, r);
        }
        else
        {
            (int e, _, string r) = Run("info", path);
            result = (e, r);
        }
        AssertOneLineError(result.exit, result.err, "secret.lime", "permission denied");
    }

    [SkippableFact]
    public void Corrupt_header_names_file_format_structure_and_offset()
    {
        byte[] file = CaptureBuilder.Lime((0x1000, 0x1000));
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(file.AsSpan(4), 7);
        (int exit, _, string err) = Run("info", _dir.Write("v7.lime", file));
        AssertOneLineError(exit, err, "v7.lime: LiME header[0].version at 0x4: version 7 is not supported");
    }

    [SkippableFact]
    public void Bad_usage_is_exit_2()
    {
        (int exit, _, string err) = Run("convert", _dir.File("x"), "--to", "vmdk", "--out", _dir.File("y"));
        AssertOneLineError(exit, err, "--to must be one of raw, lime");
        (exit, _, err) = Run("info", "x", "--output", "xml");
        AssertOneLineError(exit, err, "--output");
    }

    [SkippableFact]
    public void Info_json_is_lower_camel_case()
    {
        string path = _dir.Write("a.lime", CaptureBuilder.Lime((0x1000, 0x2000)));
        (int exit, string stdout, string err) = Run("info", path, "--output", "json");
        Assert.True(exit == 0, err);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        Assert.Equal("LiME", doc.RootElement.GetProperty("format").GetString());
        Assert.Equal(1, doc.RootElement.GetProperty("runCount").GetInt32());
        Assert.Equal("0x1000", doc.RootElement.GetProperty("runs")[0].GetProperty("physicalStart").GetString());
        (exit, stdout, _) = Run("info", path, "--output", "csv");
        Assert.Equal(0, exit);
        Assert.Contains("Physical runs,0x1000,0x2FFF", stdout, StringComparison.Ordinal);
        (exit, stdout, _) = Run("info", path, "--output", "jsonl");
        Assert.Equal(0, exit);
        Assert.Single(stdout.TrimEnd('\n').Split('\n'));
    }

    [SkippableFact]
    public void Convert_by_hand_path_never_overwrites_and_verifies()
    {
        string source = Fixture.Require("memory.kdump-zstd");
        string output = _dir.File("out.raw");
        (int exit, string stdout, string err) = Run("convert", source, "--to", "raw", "--out", output, "--output", "json");
        Assert.True(exit == 0, err);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        Assert.True(doc.RootElement.GetProperty("verified").GetBoolean());
        (exit, _, err) = Run("convert", source, "--to", "raw", "--out", output);
        AssertOneLineError(exit, err, "already exists");
    }

    [SkippableFact]
    public void Info_on_a_real_capture_prints_format_runs_and_banner()
    {
        string source = Fixture.Require("memory.kdump-lzo.flat");
        (int exit, string stdout, string err) = Run("info", source);
        Assert.True(exit == 0, err);
        Assert.Contains("kdump (makedumpfile flattened)", stdout, StringComparison.Ordinal);
        Assert.Contains("Physical runs", stdout, StringComparison.Ordinal);
        Assert.Contains("kernel banner  Linux version 6.", stdout, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Linux_plugins_run_from_the_command_line_with_no_symbol_file()
    {
        string source = Fixture.Require("memory.kdump-zlib.flat");
        (int exit, string stdout, string err) = Run("linux.pslist", source, "--output", "json");
        Assert.True(exit == 0, err);
        using JsonDocument doc = JsonDocument.Parse(stdout);
        Assert.Contains(doc.RootElement.GetProperty("rows").EnumerateArray(), r => r.GetProperty("pid").GetInt32() == 1 && r.GetProperty("comm").GetString() == "init");
        (exit, stdout, err) = Run("linux.kernel", source, "--output", "jsonl");
        Assert.True(exit == 0, err);
        using JsonDocument kernel = JsonDocument.Parse(stdout);
        Assert.StartsWith("Linux version 6.", kernel.RootElement.GetProperty("banner").GetString(), StringComparison.Ordinal);
        // A capture that is not Linux: one line saying what was tried.
        (exit, _, err) = Run("linux.pslist", _dir.Write("zeros.raw", new byte[64 * 1024]));
        AssertOneLineError(exit, err, "no Linux kernel banner");
    }

    [SkippableFact]
    public void Help_lists_every_command_without_error()
    {
        (int exit, string stdout, string err) = Run("--help");
        Assert.True(exit == 0, err);
        foreach (string command in new[] { "info", "convert", "bench", "linux.kernel", "linux.pslist", "linux.psscan", "linux.maps", "linux.sockstat", "linux.malfind", "linux.dmesg" })
        {
            Assert.Contains(command, stdout, StringComparison.Ordinal);
        }
        (exit, stdout, err) = Run("linux.maps", "--help");
        Assert.True(exit == 0, err);
        Assert.Contains("[heap]", stdout, StringComparison.Ordinal);
    }
}
