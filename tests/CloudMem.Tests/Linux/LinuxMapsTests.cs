using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>Process memory maps (maple tree, Linux 6.1) against /proc/PID/maps as the guest saw them.</summary>
public sealed class LinuxMapsTests
{
    [SkippableTheory]
    [InlineData("basic", "memory.raw")]
    [InlineData("basic", "memory.kdump-lzo.flat")]
    [InlineData("nokaslr-novmci", "memory.kdump-snappy")]
    [InlineData("pti", "memory.raw")]
    public void Maps_of_every_user_process_match_proc_maps(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        (List<LinuxMapping> maps, List<string> notes) = LinuxMaps.List(context);
        Assert.Empty(notes);
        using JsonDocument truth = Fixture.Truth(variant);
        int processes = 0;
        foreach (JsonElement process in truth.RootElement.GetProperty("processes").EnumerateArray())
        {
            if (process.GetProperty("kernel_thread").GetBoolean() || !process.TryGetProperty("maps", out JsonElement expected) || expected.GetArrayLength() == 0)
            {
                continue;
            }
            int pid = process.GetProperty("pid").GetInt32();
            var ours = maps.Where(m => m.Pid == pid).ToList();
            Assert.True(expected.GetArrayLength() == ours.Count, $"pid {pid}: {ours.Count} mappings, /proc had {expected.GetArrayLength()}");
            int i = 0;
            foreach (JsonElement m in expected.EnumerateArray())
            {
                LinuxMapping o = ours[i++];
                Assert.Equal(Convert.ToUInt64(m.GetProperty("start").GetString(), 16), o.Start);
                Assert.Equal(Convert.ToUInt64(m.GetProperty("end").GetString(), 16), o.End);
                Assert.Equal(m.GetProperty("perms").GetString(), o.Flags);
                Assert.Equal(Convert.ToUInt64(m.GetProperty("offset").GetString(), 16), o.PageOffset);
                Assert.True(m.GetProperty("path").GetString() == o.Path, $"pid {pid} 0x{o.Start:X}: path '{o.Path}', /proc '{m.GetProperty("path").GetString()}'");
            }
            processes++;
        }
        Assert.True(processes >= 10);
    }
}
