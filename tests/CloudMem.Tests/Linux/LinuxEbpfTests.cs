using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.ebpf against the program the rootkit variant loads (its fdinfo in truth.json: type, tag, id); none elsewhere.</summary>
public sealed class LinuxEbpfTests
{
    [SkippableFact]
    public void The_rootkit_variants_socket_filter_is_listed_with_its_id_type_name_and_tag()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement want = truth.RootElement.GetProperty("rootkit").GetProperty("bpf_prog");
        var report = LinuxEbpf.Run(LinuxContext.Open(memory));
        Assert.Empty(report.Notes);
        LinuxBpfProgram program = Assert.Single(report.Rows);
        Assert.Equal((want.GetProperty("id").GetInt32(), want.GetProperty("name").GetString(), want.GetProperty("tag").GetString()),
            (program.Id, program.Name, program.Tag));
        Assert.Equal(1, want.GetProperty("type").GetInt32()); // BPF_PROG_TYPE_SOCKET_FILTER in the guest's fdinfo
        Assert.Equal("SOCKET_FILTER", program.Type);
        Assert.Equal(2u, program.Instructions);
        Assert.Null(program.AttachTo);
        Assert.Null(program.Doubt);
        Assert.True(program.LoadedSeconds > 0);
    }

    [SkippableTheory]
    [InlineData("basic", "memory.raw")]
    [InlineData("pti", "memory.elf")]
    public void The_clean_captures_have_no_ebpf_program(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        var report = LinuxEbpf.Run(LinuxContext.Open(memory));
        Assert.Empty(report.Notes);
        Assert.Empty(report.Rows);
    }
}
