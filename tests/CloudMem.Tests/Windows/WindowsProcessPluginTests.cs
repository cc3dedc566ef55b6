using System.Text.Json;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.info, cmdline, envars, dlllist, threads and getsids on the attack scenario laid out with the Windows 10 19041,
/// 7 SP1 and 11 22000 ISFs: every row equals the builder's manifest; mutated images (garbage PEB, cyclic loader list,
/// garbage token, cyclic thread list) give partial rows and notes, never an exception.
/// </summary>
public sealed class WindowsProcessPluginTests(WindowsAttackImages images, ITestOutputHelper output) : IClassFixture<WindowsAttackImages>, IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private (RunMappedMemory Memory, WindowsKernel Kernel, WindowsImageManifest Manifest) Open(string guid)
    {
        (string raw, string root, WindowsImageManifest manifest, _) = images.Get(guid);
        RunMappedMemory memory = CaptureOpener.Open(raw);
        return (memory, WindowsKernel.Open(memory, new SymbolStore([root])), manifest);
    }

    private static WindowsLaidOutProcess Process(WindowsImageManifest manifest, int pid) => manifest.AllProcesses.Single(p => p.Pid == pid);

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Info_reports_discovery_and_kernel_globals(string guid)
    {
        (RunMappedMemory memory, WindowsKernel kernel, WindowsImageManifest manifest) = Open(guid);
        (uint major, uint minor, uint build) = images.Get(guid).Builder.EffectiveVersion;
        using (memory)
        {
            RowsReport<WindowsInfoRow> report = WindowsInfo.Info(kernel);

            Dictionary<string, string> info = report.Rows.ToDictionary(r => r.Variable, r => r.Value);
            Assert.Equal($"0x{manifest.KernelBase:X}", info["Kernel Base"]);
            Assert.Equal($"0x{manifest.Dtb:X}", info["DTB"]);
            Assert.Equal($"0x{manifest.SelfRefIndex:X} ({manifest.SelfRefIndex})", info["Self-Reference Index"]);
            Assert.Equal($"{guid}-1", info["PDB GUID/Age"]);
            Assert.EndsWith($"{guid}-1.json.xz", info["Symbols"]);
            Assert.StartsWith("raw", info["Capture Format"]);
            Assert.Equal("2", info["KeNumberProcessors"]);
            Assert.Equal($"{build} (free, 0x{0xF0000000 | build:X8})", info["NtBuildNumber"]);
            Assert.Equal("2024-07-07T11:00:00.0000000Z", info["SystemTime"]);
            Assert.Equal("34404 (AMD64)", info["PE Machine"]);
            Assert.Equal((major.ToString(), minor.ToString(), @"C:\Windows"), (info["NtMajorVersion"], info["NtMinorVersion"], info["NtSystemRoot"]));
            Assert.Empty(report.Notes);
        }
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Cmdline_and_envars_equal_the_manifest(string guid)
    {
        (RunMappedMemory memory, WindowsKernel kernel, WindowsImageManifest manifest) = Open(guid);
        using (memory)
        {
            RowsReport<WindowsCmdLine> cmdline = WindowsPeb.CmdLine(kernel);
            RowsReport<WindowsEnvar> envars = WindowsPeb.Envars(kernel);

            Assert.Equal(manifest.Processes.Select(p => ((long)p.Pid, p.ImageFileName, p.CommandLine)), cmdline.Rows.Select(r => (r.Pid, r.Process, r.Args)));
            Assert.Equal("no PEB (a process without a user address space)", cmdline.Rows.Single(r => r.Pid == 4).Note);
            Assert.All(cmdline.Rows.Where(r => r.Pid != 4), r => Assert.Null(r.Note));
            Assert.Empty(cmdline.Notes);
            Assert.Equal(
                manifest.Processes.SelectMany(p => p.Environment.Select(e => ((long)p.Pid, e[..e.IndexOf('=')], e[(e.IndexOf('=') + 1)..]))),
                envars.Rows.Select(r => (r.Pid, r.Variable, r.Value)));
            Assert.Contains(envars.Rows, r => r.Pid == 6044 && r.Variable == "STAGE2" && r.Value == "http://203.0.113.7/a.ps1");
            Assert.Equal(["4 System: no PEB (a process without a user address space)"], envars.Notes);
            Assert.Equal(["PATH=C:\\Windows\\system32;C:\\Windows"], WindowsPeb.Envars(kernel, new HashSet<long> { 6044 }).Rows.Where(r => r.Variable == "PATH").Select(r => $"{r.Variable}={r.Value}"));
        }
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Dlllist_equals_the_load_order_list_of_the_manifest(string guid)
    {
        (RunMappedMemory memory, WindowsKernel kernel, WindowsImageManifest manifest) = Open(guid);
        using (memory)
        {
            RowsReport<WindowsDll> report = WindowsPeb.DllList(kernel);

            var expected = manifest.Processes.SelectMany(p => p.Modules.Where(m => m.InLoad)
                .Select((m, i) => ((long)p.Pid, p.ImageFileName, m.Base, (ulong)m.Size, m.Name, m.Path, i)));
            Assert.Equal(expected, report.Rows.Select(r => (r.Pid, r.Process, r.Base, r.Size, r.Name!, r.Path!, r.LoadOrder)));
            Assert.Empty(report.Notes);
            // evil.dll is on no list, amsi.dll only off the load-order list: neither is in dlllist; amsi.dll is on the memory-order list.
            Assert.DoesNotContain(report.Rows, r => r.Name is "evil.dll" or "amsi.dll");
            WindowsProcess shell = WindowsProcesses.List(kernel).Processes.Single(p => p.Pid == 6044);
            Assert.Contains(WindowsPeb.Modules(kernel, shell, LoaderList.MemoryOrder).Modules, m => m.Name == "amsi.dll");
            Assert.DoesNotContain(WindowsPeb.Modules(kernel, shell, LoaderList.InitializationOrder).Modules, m => m.Name == "powershell.exe");
            Assert.Equal(["powershell.exe", "ntdll.dll", "kernel32.dll", "KernelBase.dll"], WindowsPeb.DllList(kernel, new HashSet<long> { 6044 }).Rows.Select(r => r.Name));
        }
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Threads_equal_the_manifest_and_the_injected_thread_is_flagged(string guid)
    {
        (RunMappedMemory memory, WindowsKernel kernel, WindowsImageManifest manifest) = Open(guid);
        using (memory)
        {
            RowsReport<WindowsThread> report = WindowsThreads.Threads(kernel);

            Assert.Equal(
                manifest.Processes.SelectMany(p => p.Threads).Select(t => (t.Address, (long)t.Pid, (long)t.Tid, t.StartAddress, t.Win32StartAddress, t.StartModule, (DateTimeOffset?)t.CreateTime)),
                report.Rows.Select(r => (r.Offset, r.Pid, r.Tid, r.StartAddress, r.Win32StartAddress, r.Win32StartModule, r.CreateTime)));
            Assert.Empty(report.Notes);
            WindowsThread injected = Assert.Single(report.Rows, r => r.Suspicious is not null);
            Assert.Equal((6044L, 6052L, 0x20000100000UL), (injected.Pid, injected.Tid, injected.Win32StartAddress));
            Assert.Null(injected.Win32StartModule);
            Assert.All(report.Rows.Where(r => r.Pid != 4), r => Assert.Equal("ntdll.dll", r.StartModule));
            Assert.All(report.Rows.Where(r => r.Pid == 4), r => Assert.Equal(("ntoskrnl.exe", "ntoskrnl.exe"), (r.StartModule, r.Win32StartModule)));
            Assert.Equal([5124L, 5128L], WindowsThreads.Threads(kernel, new HashSet<long> { 5120 }).Rows.Select(r => r.Tid));
            Assert.Equal(["VBE7.DLL"], report.Rows.Where(r => r.Tid == 5128).Select(r => r.Win32StartModule));
        }
    }

    [SkippableTheory]
    [InlineData(WindowsPsListTests.Win10)]
    [InlineData(WindowsPsListTests.Win7)]
    [InlineData(WindowsPsListTests.Win11)]
    public void Getsids_equals_the_manifest_with_well_known_names(string guid)
    {
        (RunMappedMemory memory, WindowsKernel kernel, WindowsImageManifest manifest) = Open(guid);
        using (memory)
        {
            RowsReport<WindowsSid> report = WindowsTokens.GetSids(kernel);

            Assert.Equal(manifest.Processes.SelectMany(p => p.Sids.Select(s => ((long)p.Pid, p.ImageFileName, s))), report.Rows.Select(r => (r.Pid, r.Process, r.Sid)));
            Assert.Empty(report.Notes);
            Assert.Equal(
                [("S-1-5-18", "Local System"), ("S-1-5-32-544", "Administrators"), ("S-1-1-0", "Everyone"), ("S-1-5-11", "Authenticated Users"), ("S-1-16-16384", "System Mandatory Level")],
                report.Rows.Where(r => r.Pid == 4).Select(r => (r.Sid, r.Name!)));
            WindowsSid[] shell = [.. report.Rows.Where(r => r.Pid == 6044)];
            Assert.Equal((WindowsImageBuilder.UserSid, (string?)null), (shell[0].Sid, shell[0].Name));
            Assert.Equal(("S-1-16-12288", "High Mandatory Level"), (shell.Single(r => r.Integrity).Sid, shell.Single(r => r.Integrity).Name!));
            Assert.Equal("Medium Mandatory Level", report.Rows.Single(r => r.Pid == 5120 && r.Integrity).Name);
        }
    }

    [SkippableFact]
    public void Hollowed_and_unlinked_processes_are_read_from_their_own_structures()
    {
        (RunMappedMemory memory, WindowsKernel kernel, WindowsImageManifest manifest) = Open(WindowsPsListTests.Win10);
        using (memory)
        {
            // Unmapped hollowing: the PEB still names svchost.exe at the image base (now private memory); the plugins report what the PEB says.
            WindowsLaidOutProcess hollowed = Process(manifest, 844);
            Assert.Equal(HollowKind.Unmapped, hollowed.Hollow);
            WindowsDll exe = WindowsPeb.DllList(kernel, new HashSet<long> { 844 }).Rows[0];
            Assert.Equal((hollowed.ImageBase, "svchost.exe"), (exe.Base, exe.Name));
            Assert.Null(Assert.Single(WindowsThreads.Threads(kernel, new HashSet<long> { 844 }).Rows).Suspicious);

            // The unlinked process is on no list: no rows from the list-based plugins, but its own structures read by address.
            WindowsLaidOutProcess unlinked = Assert.Single(manifest.Unlinked);
            Assert.Empty(WindowsPeb.CmdLine(kernel, new HashSet<long> { unlinked.Pid }).Rows);
            WindowsProcess rundll = kernel.ProcessAt(unlinked.Address)!;
            Assert.Equal((7312L, "rundll32.exe"), (rundll.Pid, rundll.ImageFileName));
            Assert.Equal((unlinked.CommandLine, (string?)null), WindowsPeb.CommandLine(kernel, rundll));
            Assert.Equal(unlinked.Modules.Where(m => m.InLoad).Select(m => m.Name), WindowsPeb.Modules(kernel, rundll).Modules.Select(m => m.Name!));
            Assert.Equal(unlinked.Threads.Select(t => (long)t.Tid), WindowsThreads.List(kernel, rundll).Threads.Select(t => t.Tid));
            Assert.Equal(unlinked.Sids, WindowsTokens.Sids(kernel, rundll).Sids.Select(s => s.Sid));
        }
    }

    [SkippableFact]
    public void A_garbage_PEB_pointer_gives_notes_not_exceptions()
    {
        (RunMappedMemory memory, WindowsKernel clean, WindowsImageManifest manifest) = Open(WindowsPsListTests.Win10);
        using (memory)
        {
            WindowsLaidOutProcess shell = Process(manifest, 6044);
            Assert.True(clean.Types.TryGetOffset("_EPROCESS", "Peb", out int pebOffset));
            using var overlay = new OverlayMemory(memory);
            overlay.PatchUInt64(Physical(clean.Kernel, shell.Address + (ulong)pebOffset), 0x00007FF0DEAD0000);
            WindowsKernel kernel = WindowsKernel.Open(overlay, new SymbolStore([images.Get(WindowsPsListTests.Win10).Root]));

            WindowsCmdLine row = WindowsPeb.CmdLine(kernel).Rows.Single(r => r.Pid == 6044);
            RowsReport<WindowsDll> dlls = WindowsPeb.DllList(kernel);
            RowsReport<WindowsEnvar> envars = WindowsPeb.Envars(kernel);
            RowsReport<WindowsThread> threads = WindowsThreads.Threads(kernel, new HashSet<long> { 6044 });

            Assert.Null(row.Args);
            Assert.StartsWith("Required memory at 0x7FF0DEAD", row.Note);
            Assert.Contains("is not valid (NotPresent)", row.Note);
            output.WriteLine(row.Note);
            Assert.DoesNotContain(dlls.Rows, r => r.Pid == 6044);
            Assert.Contains(dlls.Notes, n => n.StartsWith("6044 powershell.exe: _PEB.Ldr: Required memory at 0x7FF0DEAD", StringComparison.Ordinal));
            Assert.Contains(dlls.Rows, r => r.Pid == 5120);
            Assert.DoesNotContain(envars.Rows, r => r.Pid == 6044);
            Assert.Contains(envars.Notes, n => n.StartsWith("6044 powershell.exe: Required memory", StringComparison.Ordinal));
            // Threads still list; with no module list every user start is in "no module".
            Assert.Equal([6048L, 6052L], threads.Rows.Select(r => r.Tid));
            Assert.Contains(threads.Notes, n => n.Contains("loader lists: _PEB.Ldr", StringComparison.Ordinal));
        }
    }

    [SkippableFact]
    public void A_cyclic_loader_list_gives_the_modules_before_the_cycle_and_a_note()
    {
        (RunMappedMemory memory, WindowsKernel clean, WindowsImageManifest manifest) = Open(WindowsPsListTests.Win10);
        using (memory)
        {
            WindowsLaidOutProcess word = Process(manifest, 5120);
            Assert.True(clean.Types.TryGetOffset("_LDR_DATA_TABLE_ENTRY", "InLoadOrderLinks", out int links));
            AddressSpace space = clean.ProcessSpace(word.Dtb);
            // kernel32's Flink goes back to ntdll: WINWORD, ntdll, kernel32, ntdll, ...
            LaidOutModule ntdll = word.Modules.Single(m => m.Name == "ntdll.dll"), kernel32 = word.Modules.Single(m => m.Name == "kernel32.dll");
            using var overlay = new OverlayMemory(memory);
            overlay.PatchUInt64(Physical(space, kernel32.LdrEntry + (ulong)links), ntdll.LdrEntry + (ulong)links);
            WindowsKernel kernel = WindowsKernel.Open(overlay, new SymbolStore([images.Get(WindowsPsListTests.Win10).Root]));

            RowsReport<WindowsDll> report = WindowsPeb.DllList(kernel, new HashSet<long> { 5120 });

            Assert.Equal(["WINWORD.EXE", "ntdll.dll", "kernel32.dll"], report.Rows.Select(r => r.Name!));
            string note = Assert.Single(report.Notes);
            Assert.Equal($"5120 WINWORD.EXE: InLoadOrderModuleList: list cycle: entry 0x{ntdll.LdrEntry + (ulong)links:X} seen before, after 3 modules; walk stopped", note);
            // Threads resolve against the union of the three lists, so the VBE7 thread still finds its module (memory-order list).
            Assert.Equal(["WINWORD.EXE", "VBE7.DLL"], WindowsThreads.Threads(kernel, new HashSet<long> { 5120 }).Rows.Select(r => r.Win32StartModule!));
        }
    }

    [SkippableFact]
    public void Garbage_tokens_and_a_cyclic_thread_list_give_partial_rows_and_notes()
    {
        (RunMappedMemory memory, WindowsKernel clean, WindowsImageManifest manifest) = Open(WindowsPsListTests.Win10);
        using (memory)
        {
            Assert.True(clean.Types.TryGetOffset("_EPROCESS", "Token", out int tokenOffset));
            Assert.True(clean.Types.TryGetOffset("_ETHREAD", "ThreadListEntry", out int threadLinks));
            Assert.True(clean.Types.TryGetOffset("_TOKEN", "UserAndGroupCount", out int countOffset));
            using var overlay = new OverlayMemory(memory);
            // smss: token pointer to an unmapped kernel address; csrss: a huge SID count; powershell: second thread's Flink points at itself.
            overlay.PatchUInt64(Physical(clean.Kernel, Process(manifest, 348).Address + (ulong)tokenOffset), 0xFFFFB0000000001A);
            Assert.True(clean.Kernel.TryReadUInt64(Process(manifest, 452).Address + (ulong)tokenOffset, out ulong csrssToken));
            overlay.Patch(Physical(clean.Kernel, (csrssToken & ~0xFUL) + (ulong)countOffset), BitConverter.GetBytes(0x7FFFFFFFu));
            LaidOutThread second = Process(manifest, 6044).Threads[1];
            overlay.PatchUInt64(Physical(clean.Kernel, second.Address + (ulong)threadLinks), second.Address + (ulong)threadLinks);
            WindowsKernel kernel = WindowsKernel.Open(overlay, new SymbolStore([images.Get(WindowsPsListTests.Win10).Root]));

            RowsReport<WindowsSid> sids = WindowsTokens.GetSids(kernel);
            RowsReport<WindowsThread> threads = WindowsThreads.Threads(kernel, new HashSet<long> { 6044 });

            Assert.DoesNotContain(sids.Rows, r => r.Pid is 348 or 452);
            Assert.Contains(sids.Notes, n => n.StartsWith("348 smss.exe: _TOKEN at 0xFFFFB00000000010: Required memory at 0xFFFFB00000000", StringComparison.Ordinal));
            Assert.Contains(sids.Notes, n => n.StartsWith("452 csrss.exe: _TOKEN at 0x", StringComparison.Ordinal) && n.EndsWith("UserAndGroupCount 2147483647 is more than 1024; token not read", StringComparison.Ordinal));
            Assert.Equal(manifest.Processes.Where(p => p.Pid is not (348 or 452)).Sum(p => p.Sids.Count), sids.Rows.Count);
            Assert.Equal([6048L, 6052L], threads.Rows.Select(r => r.Tid));
            Assert.Equal($"6044 powershell.exe: thread list: list cycle: entry 0x{second.Address + (ulong)threadLinks:X} seen before, after 2 threads; walk stopped", Assert.Single(threads.Notes));
        }
    }

    [SkippableFact]
    public void Commands_print_rows_as_json_and_filter_by_pid()
    {
        (string raw, string root, WindowsImageManifest manifest, _) = images.Get(WindowsPsListTests.Win10);

        JsonElement[] Rows(params string[] args)
        {
            (int exit, string stdout, string stderr) = CliRunner.Run(new Dictionary<string, string> { ["XDG_CACHE_HOME"] = _dir.File("cache") }, null,
                [args[0], raw, "--symbols", root, "--output", "json", .. args[1..]]);
            Assert.True(exit == 0, stderr);
            using JsonDocument json = JsonDocument.Parse(stdout);
            return [.. json.RootElement.GetProperty("rows").EnumerateArray().Select(e => e.Clone())];
        }

        JsonElement[] dlls = Rows("windows.dlllist", "--pid", "6044", "--pid", "5120");
        Assert.Equal(Process(manifest, 5120).Modules.Concat(Process(manifest, 6044).Modules).Where(m => m.InLoad).Select(m => $"0x{m.Base:X} {m.Name}"),
            dlls.Select(r => $"{r.GetProperty("base").GetString()} {r.GetProperty("name").GetString()}"));
        JsonElement injected = Assert.Single(Rows("windows.threads", "--pid", "6044"), r => r.TryGetProperty("suspicious", out JsonElement s) && s.ValueKind == JsonValueKind.String);
        Assert.Equal(6052, injected.GetProperty("tid").GetInt32());
        Assert.Equal(Process(manifest, 5120).CommandLine, Assert.Single(Rows("windows.cmdline", "--pid", "5120")).GetProperty("args").GetString());
        Assert.Contains(Rows("windows.envars", "--pid", "6044"), r => r.GetProperty("variable").GetString() == "STAGE2");
        Assert.Equal(Process(manifest, 6044).Sids, Rows("windows.getsids", "--pid", "6044").Select(r => r.GetProperty("sid").GetString()));
        Assert.Contains(Rows("windows.info"), r => r.GetProperty("variable").GetString() == "NtBuildNumber" && r.GetProperty("value").GetString()!.StartsWith("19041 (free", StringComparison.Ordinal));

        (int code, string table, string err) = CliRunner.Run(new Dictionary<string, string> { ["XDG_CACHE_HOME"] = _dir.File("cache") }, null,
            "windows.threads", raw, "--symbols", root, "--pid", "6044");
        Assert.True(code == 0, err);
        Assert.Contains("Win32StartAddress in no loaded module", table);
        (code, _, err) = CliRunner.Run(new Dictionary<string, string> { ["XDG_CACHE_HOME"] = _dir.File("cache") }, null, "windows.dlllist", raw, "--symbols", _dir.File("nothing"));
        Assert.Equal(2, code);
        Assert.StartsWith("cloudmem: ", err);
        Assert.Contains("no symbol table for the Windows kernel", err);
    }

    private static ulong Physical(IVirtualMemory space, ulong va)
    {
        Assert.True(space.TryTranslate(va, out Translation translation, out TranslationFault fault), $"0x{va:X}: {fault}");
        return translation.PhysicalAddress;
    }
}
