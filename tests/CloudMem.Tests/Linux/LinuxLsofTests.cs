using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.lsof from the image alone against every process's /proc/PID/fd as the guest read it (truth.json processes[].fds).</summary>
public sealed class LinuxLsofTests
{
    public static TheoryData<string, string> Captures() => new()
    {
        { "basic", "memory.raw" },
        { "nokaslr-novmci", "memory.lime" },
        { "pti", "memory.elf" },
        { "rootkit", "memory.raw" },
    };

    [SkippableTheory]
    [MemberData(nameof(Captures))]
    public void Every_open_file_of_every_process_in_truth_is_listed_with_the_same_path(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        using JsonDocument truth = Fixture.Truth(variant);
        LinuxContext context = LinuxContext.Open(memory);
        var report = LinuxLsof.Run(context);
        Assert.Empty(report.Notes);
        var listed = LinuxProcesses.List(context).Processes.Select(p => p.Pid).ToHashSet();
        int compared = 0;
        foreach (JsonElement process in truth.RootElement.GetProperty("processes").EnumerateArray())
        {
            int pid = process.GetProperty("pid").GetInt32();
            // init writes the truth itself, with its descriptors redirected to the truth port at that moment; a process the
            // rootkit unlinked from the task list is not on it (lsof walks the task list, as /proc does not).
            if (pid == 1 || !listed.Contains(pid) || !process.TryGetProperty("fds", out JsonElement fds) || fds.ValueKind != JsonValueKind.Object)
            {
                continue;
            }
            var want = fds.EnumerateObject().ToDictionary(f => int.Parse(f.Name), f => f.Value.GetString()!);
            var got = report.Rows.Where(r => r.Pid == pid).ToDictionary(r => r.Fd, r => r.Path);
            Assert.Equal(want.OrderBy(f => f.Key), got.OrderBy(f => f.Key));
            compared += want.Count;
        }
        Assert.True(compared >= 40, $"only {compared} descriptors compared");
        Assert.All(report.Rows, r => Assert.Null(r.Doubt));
        // Typed columns agree with the path: pseudo files and their types, deletion.
        Assert.All(report.Rows.Where(r => r.Path.StartsWith("socket:[", StringComparison.Ordinal)),
            r => Assert.Equal((LinuxFileType.Socket, $"socket:[{r.Inode}]"), (r.Type, r.Path)));
        Assert.All(report.Rows.Where(r => r.Path.StartsWith("pipe:[", StringComparison.Ordinal)),
            r => Assert.Equal((LinuxFileType.Fifo, $"pipe:[{r.Inode}]"), (r.Type, r.Path)));
        Assert.All(report.Rows, r => Assert.Equal(r.Path.EndsWith(" (deleted)", StringComparison.Ordinal), r.Deleted));
        Assert.Contains(report.Rows, r => r.Path == "/dev/null" && r.Type == LinuxFileType.CharacterDevice && r.Device is not null);
        Assert.Contains(report.Rows, r => r.Path == "/tmp/messages" && r.Type == LinuxFileType.Regular && r.Size > 0 && r.Modified is not null
            && r.Access == "w" && (r.Flags & 0x400) != 0); // syslogd appends (O_APPEND)
    }

    [SkippableFact]
    public void The_deleted_script_of_the_rootkit_variant_is_open_and_marked_deleted()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement script = truth.RootElement.GetProperty("rootkit").GetProperty("deleted_script");
        var report = LinuxLsof.Run(LinuxContext.Open(memory), new HashSet<int> { script.GetProperty("pid").GetInt32() });
        LinuxOpenFile row = Assert.Single(report.Rows, r => r.Deleted);
        Assert.Equal(script.GetProperty("path").GetString() + " (deleted)", row.Path);
        Assert.Equal(script.GetProperty("size").GetInt64(), row.Size);
        Assert.Equal(LinuxFileType.Regular, row.Type);
        Assert.All(report.Rows, r => Assert.Equal(script.GetProperty("pid").GetInt32(), r.Pid));
    }
}
