using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.ebpf, linux.ebpf.maps and linux.ebpf.links against the programs, map and link the rootkit variant creates (their
/// fdinfo in truth.json: type, tag, ids); none elsewhere.</summary>
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
        Assert.Equal(2, report.Rows.Count);   // the socket filter and the raw tracepoint program held by the link
        LinuxBpfProgram program = Assert.Single(report.Rows, r => r.Type == "SOCKET_FILTER");
        Assert.Equal((want.GetProperty("id").GetInt32(), want.GetProperty("name").GetString(), want.GetProperty("tag").GetString()),
            (program.Id, program.Name, program.Tag));
        Assert.Equal(1, want.GetProperty("type").GetInt32()); // BPF_PROG_TYPE_SOCKET_FILTER in the guest's fdinfo
        Assert.Equal("SOCKET_FILTER", program.Type);
        Assert.Equal(2u, program.Instructions);
        Assert.Null(program.AttachTo);
        Assert.Null(program.Doubt);
        Assert.True(program.LoadedSeconds > 0);
    }

    [SkippableFact]
    public void The_rootkit_variants_map_and_raw_tracepoint_link_are_listed_with_their_ids()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement rk = truth.RootElement.GetProperty("rootkit");
        LinuxContext context = LinuxContext.Open(memory);

        JsonElement wantMap = rk.GetProperty("bpf_map");
        var maps = LinuxEbpf.Maps(context);
        Assert.Empty(maps.Notes);
        LinuxBpfMap map = Assert.Single(maps.Rows);
        Assert.Equal(2, wantMap.GetProperty("type").GetInt32()); // BPF_MAP_TYPE_ARRAY in the guest's fdinfo
        Assert.Equal((wantMap.GetProperty("id").GetInt32(), "ARRAY", wantMap.GetProperty("name").GetString()!), (map.Id, map.Type, map.Name));
        Assert.Equal(((uint)wantMap.GetProperty("key_size").GetInt32(), (uint)wantMap.GetProperty("value_size").GetInt32(), (uint)wantMap.GetProperty("max_entries").GetInt32()),
            (map.KeySize!.Value, map.ValueSize!.Value, map.MaxEntries!.Value));
        Assert.Null(map.Doubt);

        JsonElement wantLink = rk.GetProperty("bpf_link");
        var links = LinuxEbpf.Links(context);
        Assert.Empty(links.Notes);
        LinuxBpfLink link = Assert.Single(links.Rows);
        Assert.Equal("raw_tracepoint", wantLink.GetProperty("type").GetString());
        Assert.Equal((wantLink.GetProperty("id").GetInt32(), "RAW_TRACEPOINT", wantLink.GetProperty("prog_id").GetInt32(), wantLink.GetProperty("prog_name").GetString(),
            "RAW_TRACEPOINT", wantLink.GetProperty("tp_name").GetString()), (link.Id, link.Type, link.ProgramId!.Value, link.ProgramName, link.ProgramType, link.Target));
        Assert.Null(link.Doubt);
        LinuxBpfProgram linked = Assert.Single(LinuxEbpf.Run(context).Rows, r => r.Id == link.ProgramId);
        Assert.Equal("RAW_TRACEPOINT", linked.Type);
    }

    [SkippableTheory]
    [InlineData("basic", "memory.raw")]
    [InlineData("pti", "memory.elf")]
    public void The_clean_captures_have_no_ebpf_program(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        var report = LinuxEbpf.Run(context);
        Assert.Empty(report.Notes);
        Assert.Empty(report.Rows);
        var maps = LinuxEbpf.Maps(context);
        Assert.Empty(maps.Notes);
        Assert.Empty(maps.Rows);
        var links = LinuxEbpf.Links(context);
        Assert.Empty(links.Notes);
        Assert.Empty(links.Rows);
    }
}
