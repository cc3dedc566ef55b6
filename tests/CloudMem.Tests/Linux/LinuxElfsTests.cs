using System.Globalization;
using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.elfs against the guest's /proc/PID/maps and /proc/PID/exe: every process's executable (at offset 0) and its vDSO, nothing else
/// (the guest's programs are static), with the memfd and deleted executables flagged.</summary>
public sealed class LinuxElfsTests
{
    public static TheoryData<string, string> Captures() => new()
    {
        { "basic", "memory.raw" },
        { "pti", "memory.elf" },
        { "rootkit", "memory.raw" },
    };

    [SkippableTheory]
    [MemberData(nameof(Captures))]
    public void Each_process_maps_its_executable_and_the_vdso_as_elf_images(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        using JsonDocument truth = Fixture.Truth(variant);
        LinuxContext context = LinuxContext.Open(memory);
        var report = LinuxElfs.Run(context);
        Assert.Empty(report.Notes);
        var listed = LinuxProcesses.List(context).Processes.Select(p => p.Pid).ToHashSet();
        int processes = 0;
        foreach (JsonElement process in truth.RootElement.GetProperty("processes").EnumerateArray())
        {
            int pid = process.GetProperty("pid").GetInt32();
            if (process.GetProperty("kernel_thread").GetBoolean() || !listed.Contains(pid))
            {
                continue;
            }
            string exe = process.GetProperty("exe").GetString()!;
            var want = process.GetProperty("maps").EnumerateArray()
                .Where(m => m.GetProperty("offset").GetString() == "0x00000000" && m.GetProperty("path").GetString() is { } p && (p == exe || p == "[vdso]"))
                .Select(m => (ulong.Parse(m.GetProperty("start").GetString()![2..], NumberStyles.HexNumber), m.GetProperty("path").GetString()!))
                .OrderBy(x => x.Item1).ToList();
            var got = report.Rows.Where(r => r.Pid == pid).Select(r => (r.Start, r.Path)).OrderBy(x => x.Start).ToList();
            Assert.Equal(want, got);
            LinuxElf image = report.Rows.Single(r => r.Pid == pid && r.Path == exe);
            Assert.Equal(62, image.Machine);
            Assert.Equal(64, image.Bits);
            Assert.True(image.ImageEnd > image.End, $"pid {pid}: the image ends where its header mapping ends");
            Assert.Equal(exe.Contains("/memfd:", StringComparison.Ordinal) || exe.EndsWith(" (deleted)", StringComparison.Ordinal), image.Finding is not null);
            processes++;
        }
        Assert.True(processes >= 15);
        Assert.Contains(report.Rows, r => r.Finding is not null && r.Path.StartsWith("/memfd:", StringComparison.Ordinal));
    }
}
