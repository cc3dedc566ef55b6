using System.Diagnostics;
using System.IO.Compression;
using CloudMem.Engine.Symbols;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Symbols;

/// <summary>
/// BTF and ISF from real kernels: the shared BTF sample (a 7.x kernel, cilium/ebpf test data), the BTF found in
/// the fixture's memory (Debian 12, whichever kernel the fixture booted) and the Volatility ISF of that same kernel (dwarf2json from
/// its DWARF), whose offsets must agree with the BTF's. Shared files are development data kept outside the
/// repository; the tests skip where they are absent.
/// </summary>
public sealed class RealSymbolTests(ITestOutputHelper output)
{
    /// <summary>Members the Linux plugins read; the BTF in memory and the ISF of the same kernel must agree on each.</summary>
    public static readonly string[] PluginFields =
    [
        "task_struct.pid", "task_struct.tgid", "task_struct.comm", "task_struct.tasks", "task_struct.mm",
        "task_struct.active_mm", "task_struct.real_parent", "task_struct.parent", "task_struct.children",
        "task_struct.sibling", "task_struct.cred", "task_struct.real_cred", "task_struct.files", "task_struct.flags",
        "task_struct.exit_state", "task_struct.thread_group", "task_struct.group_leader", "task_struct.start_time",
        "task_struct.signal", "task_struct.nsproxy", "task_struct.thread_pid", "task_struct.fs", "task_struct.tasks.next",
        "cred.uid", "cred.gid", "cred.euid",
        "mm_struct.pgd", "mm_struct.mm_mt", "mm_struct.arg_start", "mm_struct.arg_end", "mm_struct.env_start",
        "mm_struct.env_end", "mm_struct.start_brk", "mm_struct.brk", "mm_struct.start_stack", "mm_struct.exe_file",
        "mm_struct.mm_mt.ma_root",
        "vm_area_struct.vm_start", "vm_area_struct.vm_end", "vm_area_struct.vm_flags", "vm_area_struct.vm_file",
        "vm_area_struct.vm_pgoff", "vm_area_struct.vm_mm",
        "files_struct.fdt", "fdtable.fd", "fdtable.max_fds",
        "file.f_path", "file.f_op", "file.private_data", "file.f_inode",
        "path.dentry", "path.mnt",
        "dentry.d_name", "dentry.d_parent", "dentry.d_inode", "qstr.name",
        "socket.sk", "socket.type", "socket.file",
        "sock_common.skc_family", "sock_common.skc_state", "sock_common.skc_daddr", "sock_common.skc_rcv_saddr",
        "sock_common.skc_dport", "sock_common.skc_num", "sock_common.skc_v6_daddr", "sock_common.skc_v6_rcv_saddr",
        "sock.__sk_common", "sock.sk_protocol", "sock.sk_type",
        "unix_sock.addr", "unix_sock.path",
        "module.list", "module.name", "module.core_layout",
        "list_head.next", "list_head.prev",
        "pid.numbers", "upid.nr", "upid.ns",
        "maple_tree.ma_root",
        "maple_node.parent", "maple_node.slot", "maple_node.pad", "maple_node.rcu", "maple_node.piv_parent",
        "maple_node.parent_slot", "maple_node.type", "maple_node.slot_len", "maple_node.mr64", "maple_node.ma64",
        "maple_node.alloc",
        "maple_range_64.pivot", "maple_range_64.slot", "maple_arange_64.gap",
        "printk_ringbuffer.desc_ring", "printk_ringbuffer.text_data_ring", "printk_ringbuffer.fail",
        "prb_desc_ring.count_bits", "prb_desc_ring.descs", "prb_desc_ring.infos", "prb_desc_ring.head_id",
        "prb_desc_ring.tail_id",
        "printk_info.seq", "printk_info.ts_nsec", "printk_info.text_len",
    ];

    /// <summary>Sizes the plugins need.</summary>
    public static readonly string[] PluginSizes = ["task_struct", "mm_struct", "file", "maple_node", "printk_info", "prb_desc"];

    private static string Shared(params string[] parts) => SharedFiles.Require(parts);

    [SkippableFact]
    public void Shared_btf_sample_parses_whole()
    {
        byte[] blob;
        using (var gzip = new GZipStream(File.OpenRead(Shared("samples", "btf", "vmlinux.btf.gz")), CompressionMode.Decompress))
        using (var buffer = new MemoryStream())
        {
            gzip.CopyTo(buffer);
            blob = buffer.ToArray();
        }
        Assert.Equal(4_497_363, blob.Length);
        var watch = Stopwatch.StartNew();
        TypeModel model = BtfLoader.Load(blob, "vmlinux.btf");
        output.WriteLine($"{model}, parsed in {watch.ElapsedMilliseconds} ms");

        TypeInfo task = model.FindStruct("task_struct")!;
        Assert.Equal(TypeKind.Struct, task.Kind);
        foreach (string member in new[] { "pid", "tgid", "comm", "tasks", "mm", "real_parent" })
        {
            Assert.NotNull(task.FindField(member));
        }
        TypeInfo comm = task.FindField("comm")!.Type.Resolve();
        Assert.Equal(TypeKind.Array, comm.Kind);
        Assert.Equal(16, comm.ArrayLength);
        Assert.Equal(16, comm.Size);
        Assert.Equal("char", comm.Target!.Name);
        Assert.Equal(TypeKind.Pointer, task.FindField("mm")!.Type.Kind);
        Assert.Equal("mm_struct", task.FindField("mm")!.Type.Target!.Name);
        Assert.Equal(4, task.FindField("pid")!.Type.Size);           // pid_t -> __kernel_pid_t -> int
        Assert.True(task.FindField("pid")!.Type.Resolve().IsSigned);
        Assert.True(model.TryGetOffset("list_head", "prev", out int prev));
        Assert.Equal(8, prev);
    }

    [SkippableFact]
    public void Btf_is_found_in_the_fixture_memory_and_loads()
    {
        string raw = Fixture.Require("memory.raw");
        using RunMappedMemory memory = CaptureOpener.OpenAs(raw, "raw");
        TimeSpan cpu = Process.GetCurrentProcess().TotalProcessorTime;
        var watch = Stopwatch.StartNew();
        Assert.True(BtfLoader.TryFind(memory, out ulong pa, out int length));
        long findMs = watch.ElapsedMilliseconds;
        TimeSpan findCpu = Process.GetCurrentProcess().TotalProcessorTime - cpu;
        byte[] blob = new byte[length];
        Assert.Equal(length, memory.Read(pa, blob));
        TypeModel model = BtfLoader.Load(blob, $"BTF in memory at 0x{pa:X}");
        TimeSpan parseCpu = Process.GetCurrentProcess().TotalProcessorTime - cpu - findCpu;
        output.WriteLine($"BTF at 0x{pa:X}, {length} bytes: found in {findMs} ms ({findCpu.TotalMilliseconds:F0} ms CPU), "
            + $"parsed in {watch.ElapsedMilliseconds - findMs} ms ({parseCpu.TotalMilliseconds:F0} ms CPU); {model}");

        Assert.True(model.TypeCount > 50_000);
        Assert.True(model.TryGetOffset("task_struct", "comm", out int comm) && comm > 0);
        Assert.NotNull(model.FindStruct("maple_node"));
        Assert.Empty(model.Symbols);
    }

    [SkippableTheory]
    [InlineData("memory.lime")]
    [InlineData("memory.kdump-zstd")]
    public void Btf_is_found_at_the_same_address_in_other_capture_formats(string file)
    {
        using RunMappedMemory raw = CaptureOpener.OpenAs(Fixture.Require("memory.raw"), "raw");
        using RunMappedMemory other = CaptureOpener.Open(Fixture.Require(file));
        Assert.True(BtfLoader.TryFind(raw, out ulong rawPa, out int rawLength));
        Assert.True(BtfLoader.TryFind(other, out ulong pa, out int length));
        Assert.Equal((rawPa, rawLength), (pa, length));
        Assert.Equal(BtfLoader.LoadFromMemory(raw)!.TypeCount, BtfLoader.LoadFromMemory(other)!.TypeCount);
    }

    [SkippableFact]
    public void Btf_from_memory_and_isf_of_the_same_kernel_agree()
    {
        string raw = Fixture.Require("memory.raw");
        string? isfPath = Fixture.KernelIsf();
        Skip.If(isfPath is null, Fixture.NoKernelIsf());
        using RunMappedMemory memory = CaptureOpener.OpenAs(raw, "raw");
        TypeModel btf = BtfLoader.LoadFromMemory(memory) ?? throw new Xunit.Sdk.XunitException("no BTF in the fixture");
        var watch = Stopwatch.StartNew();
        TypeModel isf = IsfLoader.Load(isfPath);
        output.WriteLine($"{isf}, loaded in {watch.ElapsedMilliseconds} ms; {btf}");

        var disagreements = new List<string>();
        foreach (string entry in PluginFields)
        {
            int dot = entry.IndexOf('.');
            string structName = entry[..dot], path = entry[(dot + 1)..];
            bool inBtf = btf.TryGetOffset(structName, path, out int btfOffset);
            bool inIsf = isf.TryGetOffset(structName, path, out int isfOffset);
            output.WriteLine($"{entry,-34} BTF {(inBtf ? btfOffset.ToString() : "-"),6}  ISF {(inIsf ? isfOffset.ToString() : "-"),6}");
            if (!inBtf || !inIsf || btfOffset != isfOffset)
            {
                disagreements.Add($"{entry}: BTF {(inBtf ? btfOffset : "missing")}, ISF {(inIsf ? isfOffset : "missing")}");
            }
        }
        foreach (string name in PluginSizes)
        {
            Assert.True(btf.TryGetSize(name, out int btfSize), name);
            Assert.True(isf.TryGetSize(name, out int isfSize), name);
            output.WriteLine($"sizeof({name}) BTF {btfSize} ISF {isfSize}");
            if (btfSize != isfSize)
            {
                disagreements.Add($"sizeof({name}): BTF {btfSize}, ISF {isfSize}");
            }
        }
        Assert.Empty(disagreements);

        // Types agree too, not just offsets.
        Assert.Equal(TypeKind.Pointer, btf.FindField("task_struct", "mm")!.Type.Resolve().Kind);
        Assert.Equal(TypeKind.Pointer, isf.FindField("task_struct", "mm")!.Type.Resolve().Kind);
        Assert.Equal(btf.FindField("sock_common", "skc_state")!.Type.Resolve().Size, isf.FindField("sock_common", "skc_state")!.Type.Resolve().Size);
        FieldInfo btfBits = btf.FindField("sock_common", "skc_reuse")!, isfBits = isf.FindField("sock_common", "skc_reuse")!;
        Assert.Equal((btfBits.BitOffset, btfBits.BitSize), (isfBits.BitOffset, isfBits.BitSize));
        Assert.Equal(isf.FindType("task_state_change")?.EnumValues.Count, btf.FindType("task_state_change")?.EnumValues.Count);
        Assert.True(isf.Symbols.ContainsKey("init_task"));
    }
}
