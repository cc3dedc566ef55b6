using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Paging;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>
/// Linux analysis with zero symbol files: kernel discovery and the process plugins checked against the truth the
/// guest wrote about itself, on several formats, with KASLR and VMCOREINFO (basic) and without either (nokaslr-novmci).
/// </summary>
public sealed class LinuxProcessTests
{
    public static TheoryData<string, string> Captures() => new()
    {
        { "basic", "memory.raw" },
        { "basic", "memory.elf" },
        { "basic", "memory.kdump-snappy" },
        { "basic", "memory.lime" },
        { "nokaslr-novmci", "memory.raw" },
        { "nokaslr-novmci", "memory.kdump-zlib.flat" },
        { "nokaslr-novmci", "memory.avml" },
        { "pti", "memory.raw" },
        { "pti", "memory.kdump-lzo" },
    };

    [SkippableTheory]
    [MemberData(nameof(Captures))]
    public void Kernel_is_found_without_symbols_and_matches_truth(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxKernel kernel = LinuxKernel.Locate(memory);
        using JsonDocument truth = Fixture.Truth(variant);
        JsonElement kaslr = truth.RootElement.GetProperty("kernel").GetProperty("kaslr");
        Assert.Equal(Convert.ToUInt64(kaslr.GetProperty("virt_offset").GetString(), 16), kernel.VirtualSlide);
        Assert.Equal(Convert.ToUInt64(kaslr.GetProperty("init_top_pgt_phys").GetString(), 16), kernel.DirectoryTableBase);
        Assert.Equal(unchecked((long)Convert.ToUInt64(kaslr.GetProperty("phys_base").GetString(), 16)), kernel.PhysBase);
    }

    [SkippableTheory]
    [MemberData(nameof(Captures))]
    public void Every_process_in_truth_is_listed_with_pid_ppid_uid_name_and_full_cmdline(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        (List<LinuxProcess> processes, List<string> notes) = LinuxProcesses.List(context);
        Assert.Empty(notes);
        var byPid = processes.ToDictionary(p => p.Pid);
        using JsonDocument truth = Fixture.Truth(variant);
        int checkedArgs = 0;
        foreach (JsonElement expected in truth.RootElement.GetProperty("processes").EnumerateArray())
        {
            int pid = expected.GetProperty("pid").GetInt32();
            Assert.True(byPid.TryGetValue(pid, out LinuxProcess? process), $"pid {pid} ({expected.GetProperty("comm").GetString()}) missing");
            Assert.Equal(expected.GetProperty("ppid").GetInt32(), process!.Ppid);
            Assert.Equal((uint)expected.GetProperty("uid").GetInt32(), process.Uid);
            // /proc shows kernel threads' full names (and workqueue suffixes); task->comm keeps the first 15 bytes.
            Assert.StartsWith(process.Comm, expected.GetProperty("comm").GetString()!, StringComparison.Ordinal);
            Assert.Equal(expected.GetProperty("kernel_thread").GetBoolean(), process.KernelThread);
            if (!process.KernelThread && expected.GetProperty("argv").GetArrayLength() > 0)
            {
                string argv = string.Join(' ', expected.GetProperty("argv").EnumerateArray().Select(a => a.GetString()));
                Assert.Equal(argv, LinuxProcesses.CommandLine(context, process));
                checkedArgs++;
            }
        }
        Assert.True(checkedArgs >= 10, $"only {checkedArgs} command lines compared");
    }

    [SkippableFact]
    public void Pstree_puts_children_under_their_parents()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw"));
        LinuxContext context = LinuxContext.Open(memory);
        var rows = LinuxPlugins.PsTree(context).Rows;
        var depth = rows.ToDictionary(r => r.Pid, r => r.Depth);
        foreach (var row in rows.Where(r => r.Depth > 0))
        {
            Assert.Equal(depth[row.Ppid] + 1, row.Depth);
            Assert.True(rows.ToList().FindIndex(r => r.Pid == row.Ppid) < rows.ToList().FindIndex(r => r.Pid == row.Pid));
        }
    }

    [SkippableFact]
    public void With_page_table_isolation_user_memory_reads_the_same_through_either_pgd_of_the_pair()
    {
        string boot = File.ReadAllText(Fixture.Require("boot.log", "pti"));
        Assert.Contains("Kernel/User page tables isolation: enabled", boot, StringComparison.Ordinal);
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "pti"));
        LinuxContext context = LinuxContext.Open(memory);
        LinuxProcess process = LinuxProcesses.List(context).Processes.First(p => p.Comm == "fxhelper");
        Assert.True(context.Kernel.Kernel.TryReadUInt64(process.Mm + (ulong)context.Profile.MmPgd, out ulong pgd));
        Assert.True(context.Kernel.Kernel.TryReadUInt64(process.Mm + (ulong)context.Profile.MmArgStart, out ulong argStart));
        ulong kernelHalf = context.Kernel.DirectMapToPhysical(pgd);
        Assert.Equal(0UL, kernelHalf & 0x1FFF);                       // PTI allocates the pair as one 8 KiB block
        var viaKernel = new CloudMem.Engine.Paging.AddressSpace(memory, kernelHalf);
        var viaUser = new CloudMem.Engine.Paging.AddressSpace(memory, kernelHalf | 0x1000);
        byte[] a = new byte[64], b = new byte[64];
        Assert.Equal(64, viaKernel.Read(argStart, a));
        Assert.Equal(64, viaUser.Read(argStart, b));
        Assert.Equal(a, b);
        // The user half maps only what entry needs (and may clone kernel text/rodata): kernel data such as
        // init_task is not mapped there, but is through the kernel half.
        Assert.True(context.Kernel.Symbols.TryGetAddress("init_task", out ulong initTask));
        Assert.True(viaKernel.TryTranslate(initTask, out _, out _));
        Assert.False(viaUser.TryTranslate(initTask, out _, out _));
    }
}
