namespace CloudMem.ImageBuilder;

/// <summary>
/// Threads: one _ETHREAD object (pool tag 'Thre') per scenario thread, linked on _EPROCESS.ThreadListHead through
/// ThreadListEntry and on _KPROCESS.ThreadListHead through _KTHREAD.ThreadListEntry, with Cid, start addresses, create
/// time and the owning process in Tcb.Process and Tcb.ApcState.Process.
/// </summary>
public sealed partial class WindowsImageBuilder
{
    /// <summary>RVA in ntdll standing in for RtlUserThreadStart: the _ETHREAD.StartAddress of every user thread (the real start is Win32StartAddress).</summary>
    public const ulong RtlUserThreadStartRva = 0x1F10;

    /// <summary>RVAs in the kernel image where the System process's default kernel threads start.</summary>
    public static readonly ulong[] KernelThreadRvas = [0x1100, 0x1240, 0x1380];

    /// <summary>Name under which threads starting in the kernel image are recorded.</summary>
    public const string KernelModuleName = "ntoskrnl.exe";

    /// <summary>The threads a process gets when the scenario gives none.</summary>
    public static IReadOnlyList<ScenarioThread> DefaultThreads(WindowsScenarioProcess p)
        => p.NoUserSpace
            ? [.. KernelThreadRvas.Select((_, i) => new ScenarioThread(p.Pid + 4 * (i + 1)))]
            : [new ScenarioThread(p.Pid + 4) { StartModule = p.ImageFileName, StartOffset = 0x1000 }];

    partial void LayOutThreads(ProcessLayout process)
    {
        ProcessLayout p = process;
        WindowsScenarioProcess s = p.Scenario;
        WindowsLaidOutProcess laid = p.LaidOut;
        IReadOnlyList<ScenarioThread> threads = s.Threads ?? DefaultThreads(s);
        int size = SizeOf("_ETHREAD");
        ulong executiveHead = p.Eprocess + (ulong)Off("_EPROCESS", "ThreadListHead");
        ulong kernelHead = p.Eprocess + (ulong)Off("_EPROCESS", "Pcb.ThreadListHead");
        var executive = new List<ulong> { executiveHead };
        var kernel = new List<ulong> { kernelHead };
        LaidOutModule? ntdll = laid.Modules.FirstOrDefault(m => m.Name.Equals("ntdll.dll", StringComparison.OrdinalIgnoreCase));
        for (int i = 0; i < threads.Count; i++)
        {
            ScenarioThread t = threads[i];
            (ulong start, string? module) = ResolveStart(p, t, i);
            bool user = start < 0x0000800000000000;
            ulong startAddress = user && ntdll is not null ? ntdll.Base + RtlUserThreadStartRva : start;
            DateTime created = t.CreateTime ?? s.CreateTime.AddMilliseconds(1 + i);
            ulong ethread = AllocateObject(Tag("Thre"), "Thread", size);
            if (Has("_KTHREAD", "Header.Type"))
            {
                PutKernel(ethread, "_ETHREAD", "Tcb.Header.Type", 6);            // ThreadObject
            }
            PutKernel(ethread, "_ETHREAD", "Tcb.Process", p.Eprocess);
            PutKernel(ethread, "_ETHREAD", "Tcb.ApcState.Process", p.Eprocess);
            PutKernel(ethread, "_ETHREAD", "Cid.UniqueProcess", (ulong)s.Pid);
            PutKernel(ethread, "_ETHREAD", "Cid.UniqueThread", (ulong)t.Tid);
            PutKernel(ethread, "_ETHREAD", "StartAddress", startAddress);
            PutKernel(ethread, "_ETHREAD", "Win32StartAddress", start);
            PutKernel(ethread, "_ETHREAD", "CreateTime", (ulong)created.ToFileTimeUtc());
            executive.Add(ethread + (ulong)Off("_ETHREAD", "ThreadListEntry"));
            kernel.Add(ethread + (ulong)Off("_ETHREAD", "Tcb.ThreadListEntry"));
            laid.Threads.Add(new LaidOutThread(ethread, t.Tid, s.Pid, startAddress, start, module, created));
        }
        LinkKernelList(executive);
        LinkKernelList(kernel);
    }

    /// <summary>The thread's real start (Win32StartAddress) and the module it lies in (null: in no module).</summary>
    private (ulong Start, string? Module) ResolveStart(ProcessLayout p, ScenarioThread t, int index)
    {
        if (t.StartAddress is ulong absolute)
        {
            LaidOutModule? within = p.LaidOut.Modules.FirstOrDefault(m => absolute >= m.Base && absolute - m.Base < m.Size);
            bool inKernel = absolute >= KernelBase && absolute - KernelBase < KernelImageSize;
            return (absolute, within?.Name ?? (inKernel ? KernelModuleName : null));
        }
        if (t.StartModule is null)
        {
            // No start given: a kernel thread of the System-like processes, else the executable's entry point.
            if (p.Scenario.NoUserSpace)
            {
                return (KernelBase + KernelThreadRvas[index % KernelThreadRvas.Length], KernelModuleName);
            }
            LaidOutModule exe = p.LaidOut.Modules[0];
            return (exe.EntryPoint, exe.Name);
        }
        if (t.StartModule.Equals(KernelModuleName, StringComparison.OrdinalIgnoreCase))
        {
            return (KernelBase + t.StartOffset, KernelModuleName);
        }
        LaidOutModule module = p.LaidOut.Modules.FirstOrDefault(m => m.Name.Equals(t.StartModule, StringComparison.OrdinalIgnoreCase))
            ?? throw new InvalidOperationException($"process {p.Scenario.Pid}: thread {t.Tid} starts in {t.StartModule}, which the process does not load");
        return (module.Base + t.StartOffset, module.Name);
    }

    /// <summary>SizeOfImage of the kernel PE written at <see cref="KernelPhysical"/> (e_lfanew, then OptionalHeader.SizeOfImage of PE32+).</summary>
    private ulong KernelImageSize
    {
        get
        {
            uint peOffset = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(_image.Bytes.AsSpan((int)KernelPhysical + 0x3C));
            return System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(_image.Bytes.AsSpan((int)(KernelPhysical + peOffset) + 0x18 + 0x38));
        }
    }

    /// <summary>Links list nodes (the head first) into a circular doubly linked list in kernel memory.</summary>
    private void LinkKernelList(IReadOnlyList<ulong> nodes)
    {
        for (int i = 0; i < nodes.Count; i++)
        {
            _image.Write64(Dtb, nodes[i], nodes[(i + 1) % nodes.Count]);
            _image.Write64(Dtb, nodes[i] + 8, nodes[(i + nodes.Count - 1) % nodes.Count]);
        }
    }
}
