using System.Text.Json;
using CloudMem.Tests.Support;
using static CloudMem.Tests.Cli.CliProcessTests;

namespace CloudMem.Tests.Cli;

/// <summary>The CLI on VMware outputs: convert, then info from either file, as table and JSON; a missing .vmem.</summary>
public sealed class VmwareCliTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Convert_to_vmsn_then_info_from_the_state_file_and_the_vmem()
    {
        string lime = _dir.Write("g.lime", CaptureBuilder.Lime((0, 0x10000), (0x1_0000_0000, 0x8000)));
        (int exit, string stdout, string err) = Run("convert", lime, "--to", "vmsn", "--out", _dir.File("g.vmsn"), "--output", "json");
        Assert.True(exit == 0, err);
        using (JsonDocument result = JsonDocument.Parse(stdout))
        {
            Assert.Equal(2, result.RootElement.GetProperty("files").GetArrayLength());
        }

        (exit, stdout, err) = Run("info", _dir.File("g.vmsn"), "--output", "json");
        Assert.True(exit == 0, err);
        using (JsonDocument info = JsonDocument.Parse(stdout))
        {
            JsonElement root = info.RootElement;
            Assert.Equal("VMware checkpoint", root.GetProperty("format").GetString());
            Assert.Equal(2, root.GetProperty("runCount").GetInt32());
            Assert.Equal("0x100000000", root.GetProperty("runs")[1].GetProperty("physicalStart").GetString());
            Assert.Equal("0x10000", root.GetProperty("runs")[1].GetProperty("fileOffset").GetString());
            JsonElement properties = root.GetProperty("properties");
            Assert.Equal("2", properties.GetProperty("regions").GetString());
            Assert.Equal("Checkpoint (1), memory (7)", properties.GetProperty("group tags").GetString());
            Assert.StartsWith("g.vmem (companion", properties.GetProperty("memory").GetString(), StringComparison.Ordinal);
        }

        (exit, stdout, err) = Run("info", _dir.File("g.vmem"));
        Assert.True(exit == 0, err);
        Assert.Contains("VMware checkpoint", stdout, StringComparison.Ordinal);
        Assert.Contains("g.vmem (opened; layout from g.vmsn)", stdout, StringComparison.Ordinal);
        Assert.Contains("0x100000000", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public void A_state_file_without_its_vmem_is_a_one_line_error_naming_it()
    {
        string lime = _dir.Write("h.lime", CaptureBuilder.Lime((0, 0x1000)));
        (int exit, _, string err) = Run("convert", lime, "--to", "vmss", "--out", _dir.File("h.vmss"));
        Assert.True(exit == 0, err);
        File.Delete(_dir.File("h.vmem"));
        (exit, _, err) = Run("info", _dir.File("h.vmss"));
        Assert.Equal(2, exit);
        string line = Assert.Single(err.TrimEnd('\n').Split('\n'));
        Assert.Contains($"its companion {_dir.File("h.vmem")} does not exist", line, StringComparison.Ordinal);
    }
}
