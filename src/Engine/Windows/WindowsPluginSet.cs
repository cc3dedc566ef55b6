using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Symbols;
using Microsoft.Extensions.Logging;

namespace CloudMem.Engine.Windows;

/// <summary>The Windows plugins of the registry (names as Volatility spells them).</summary>
internal static class WindowsPluginSet
{
    /// <summary>The Windows kernel of a capture and its symbols, located once per <see cref="PluginContext"/>.</summary>
    internal static WindowsKernel Windows(this PluginContext context, CancellationToken ct)
        => context.Get(c =>
        {
            long started = System.Diagnostics.Stopwatch.GetTimestamp();
            WindowsKernel kernel = WindowsKernel.Open(c.Memory, c.Symbols.WindowsStore(), ct);
            c.Logger.LogDebug("windows kernel located by {Path} in {Discovery:0.0} ms (with symbols and System check {Total:0.0} ms): {Source}",
                kernel.DiscoveryPath, kernel.DiscoveryMilliseconds, System.Diagnostics.Stopwatch.GetElapsedTime(started).TotalMilliseconds, kernel.DtbSource);
            return kernel;
        });

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
    {
        const PluginInputs pid = PluginInputs.ProcessFilter;
        PluginRegistry.Register("windows.info", "Kernel facts: base, DTB, PDB GUID/age, symbol table, build, processors, system time", TargetOs.Windows, PluginInputs.None,
            (c, a, ct) => WindowsInfo.Info(c.Windows(ct)));
        PluginRegistry.Register("windows.pslist", "Processes on PsActiveProcessHead (offset, pid, ppid, image name, create time, DTB)", TargetOs.Windows, pid,
            (c, a, ct) => a.OnlyPids(WindowsProcesses.PsList(c.Windows(ct), ct), p => p.Pid));
        PluginRegistry.Register("windows.pstree", "Processes under their parents, with suspicious-parent rules (Office/browser starting a shell, lsass parents)", TargetOs.Windows, pid,
            (c, a, ct) => a.OnlyPids(WindowsProcessTree.PsTree(c.Windows(ct), ct), p => p.Pid));
        PluginRegistry.Register("windows.psscan", "Processes found by scanning physical memory for 'Proc' pool allocations, with OnList (unlinked processes)", TargetOs.Windows, pid,
            (c, a, ct) => a.OnlyPids(WindowsPoolScanner.PsScan(c.Windows(ct), ct, c.Progress), p => p.Pid));
        PluginRegistry.Register("windows.vadinfo", "Process memory ranges from the VAD tree (range, pool tag, protection, type, commit, mapped file)", TargetOs.Windows, pid,
            (c, a, ct) => WindowsVadPlugins.VadInfo(c.Windows(ct), a.LongPids, ct));
        PluginRegistry.Register("windows.ldrmodules", "PE images in process memory against the three PEB loader lists (a mapped DLL on no list is hidden)", TargetOs.Windows, pid,
            (c, a, ct) => WindowsVadPlugins.LdrModules(c.Windows(ct), a.LongPids, ct));
        PluginRegistry.Register("windows.malfind", "Executable process memory that is not a mapped image and holds code or a PE header; hexdump and disassembly", TargetOs.Windows, pid,
            (c, a, ct) => WindowsVadPlugins.Malfind(c.Windows(ct), a.LongPids, ct));
        PluginRegistry.Register("windows.yarascan", "YARA rules (--yara FILE|DIR, via libyara) over every VAD of each process: pid, rule, string, virtual and physical address", TargetOs.Windows,
            pid | PluginInputs.YaraRules, (c, a, ct) => WindowsYaraScan.Scan(c.Windows(ct), a.YaraRules!, a.LongPids, ct));
        PluginRegistry.Register("windows.hollowfind", "Hollowed processes: no VAD, a non-image VAD or another file's image at the PEB image base", TargetOs.Windows, pid,
            (c, a, ct) => WindowsVadPlugins.HollowFind(c.Windows(ct), a.LongPids, ct));
        PluginRegistry.Register("windows.procdump", "Process executables rebuilt from memory as PE files (pid.PID.BASE.exe; never overwrites)", TargetOs.Windows, pid | PluginInputs.OutputDirectory,
            (c, a, ct) => WindowsPeDump.ProcDump(c.Windows(ct), a.OutputDirectory!, a.LongPids, ct: ct));
        PluginRegistry.Register("windows.dlldump", "A process's DLLs rebuilt from memory as PE files (pid.PID.BASE.dll; --base for one; never overwrites)", TargetOs.Windows,
            pid | PluginInputs.OutputDirectory | PluginInputs.BaseAddress,
            (c, a, ct) => WindowsPeDump.DllDump(c.Windows(ct), a.OutputDirectory!, a.LongPids, a.BaseAddress, ct: ct));
        PluginRegistry.Register("windows.cmdline", "Process command lines from the PEB's process parameters", TargetOs.Windows, pid,
            (c, a, ct) => WindowsPeb.CmdLine(c.Windows(ct), a.LongPids, ct));
        PluginRegistry.Register("windows.envars", "Process environment variables from the PEB's process parameters", TargetOs.Windows, pid,
            (c, a, ct) => WindowsPeb.Envars(c.Windows(ct), a.LongPids, ct));
        PluginRegistry.Register("windows.dlllist", "Loaded modules of each process (the PEB's InLoadOrderModuleList)", TargetOs.Windows, pid,
            (c, a, ct) => WindowsPeb.DllList(c.Windows(ct), a.LongPids, ct));
        PluginRegistry.Register("windows.threads", "Threads with start addresses resolved to modules; starts outside every module are flagged", TargetOs.Windows, pid,
            (c, a, ct) => WindowsThreads.Threads(c.Windows(ct), a.LongPids, ct));
        PluginRegistry.Register("windows.getsids", "Token SIDs of each process with well-known names", TargetOs.Windows, pid,
            (c, a, ct) => WindowsTokens.GetSids(c.Windows(ct), a.LongPids, ct));
        PluginRegistry.Register("windows.handles", "Open handles of each process (object, handle value, type, granted access, name)", TargetOs.Windows, pid,
            (c, a, ct) => WindowsHandles.Handles(c.Windows(ct), a.LongPids, ct));
        PluginRegistry.Register("windows.modules", "Kernel modules on PsLoadedModuleList (offset, base, size, name, path)", TargetOs.Windows, PluginInputs.None,
            (c, a, ct) => WindowsModules.Modules(c.Windows(ct), ct));
        PluginRegistry.Register("windows.modscan", "Kernel modules found by scanning for 'MmLd' pool allocations, with OnList (unlinked drivers)", TargetOs.Windows, PluginInputs.None,
            (c, a, ct) => WindowsModules.ModScan(c.Windows(ct), ct, c.Progress));
    }
}
