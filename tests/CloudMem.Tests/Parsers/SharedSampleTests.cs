using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Parsers;

/// <summary>
/// Real makedumpfile headers from other machines (libkdumpfile's test files, kept in the workspace's shared/samples,
/// not in this repository): 32-bit i686 (packed sub-header) and armv7l (8-byte aligned sub-header, zstd).
/// Expected values come from the samples' README. Skipped where the samples are absent.
/// </summary>
public sealed class SharedSampleTests
{
    private static string Sample(string name)
    {
        string path = Path.Combine(Support.Fixture.RepoRoot, "..", "shared", "samples", "kdump", name);
        Skip.IfNot(File.Exists(path), $"shared sample {name} not present (development-only data)");
        return path;
    }

    [SkippableFact]
    public void I686_diskdump_header_notes_and_registers()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Sample("diskdump-v6-ia32"));
        Assert.Equal("i686", memory.Metadata.Get("machine"));
        Assert.Equal("6.4.3-1-pae", memory.Metadata.Get("release"));
        Assert.Equal("kdump", memory.Metadata.Get("nodename"));
        Assert.Equal("#1 SMP Tue Jul 11 11:31:04 UTC 2023", memory.Metadata.Get("version"));
        Assert.Equal("1", memory.Metadata.Get("maxMapnr"));
        Assert.Equal("0x0", memory.Metadata.Get("physBase"));
        Assert.Equal("6.4.3-1-pae", memory.Metadata.VmcoreInfo!.OsRelease);
        Assert.Equal("4096", memory.Metadata.VmcoreInfo["PAGESIZE"]);
        Assert.Equal("1689098337", memory.Metadata.VmcoreInfo["CRASHTIME"]);
        CpuState cpu = Assert.Single(memory.Metadata.Cpus);
        Assert.True(cpu.TryGet("pid", out ulong pid) && pid == 3539);
        Assert.True(cpu.TryGet("eip", out ulong eip) && eip == 0xc04b0b5f);
        Assert.Equal(4096, memory.Read(0, new byte[4096]));
    }

    [SkippableFact]
    public void Armv7_diskdump_uses_the_aligned_sub_header()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Sample("diskdump-v6-arm"));
        Assert.Equal("armv7l", memory.Metadata.Get("machine"));
        Assert.Equal("6.4.3-1-default", memory.Metadata.VmcoreInfo!.OsRelease);
        Assert.NotEmpty(memory.Metadata.Cpus);
        Assert.Equal(4096, memory.Read(0, new byte[4096]));
        Assert.Equal(0, memory.DecodeFailures);
    }
}
