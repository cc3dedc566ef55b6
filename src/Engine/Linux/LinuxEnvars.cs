using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Linux;

/// <summary>One environment variable of a process (linux.envars).</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Comm">task_struct.comm.</param>
/// <param name="Key">The name (text before the first '='; the whole entry when there is none).</param>
/// <param name="Value">The value ("" when the entry has no '=').</param>
public sealed record LinuxEnvVar(int Pid, string Comm, string Key, string Value);

/// <summary>
/// Process environments from mm->env_start..env_end in each process's own address space: the block the kernel
/// copied at execve. A process that later changed its environment (setenv) keeps the original block there.
/// </summary>
public static class LinuxEnvars
{
    /// <summary>Every variable of every user process (or of the given pids), in block order, and notes.</summary>
    public static (List<LinuxEnvVar> Variables, List<string> Notes) List(LinuxContext context, ISet<int>? pids = null, CancellationToken ct = default)
    {
        var rows = new List<LinuxEnvVar>();
        LinuxProfile p = context.Profile;
        if (p.MmEnvStart < 0 || p.MmEnvEnd < 0 || p.MmPgd < 0)
        {
            return (rows, [$"the type information ({context.Types.Source}) lacks mm_struct.env_start/env_end/pgd"]);
        }
        (List<LinuxProcess> processes, List<string> notes) = LinuxProcesses.List(context, ct);
        IVirtualMemory k = context.Kernel.Kernel;
        foreach (LinuxProcess process in processes.Where(x => x.Mm != 0 && !x.KernelThread && (pids is null || pids.Contains(x.Pid))))
        {
            ct.ThrowIfCancellationRequested();
            if (!k.TryReadUInt64(process.Mm + (ulong)p.MmEnvStart, out ulong start) || !k.TryReadUInt64(process.Mm + (ulong)p.MmEnvEnd, out ulong end)
                || !k.TryReadUInt64(process.Mm + (ulong)p.MmPgd, out ulong pgd))
            {
                notes.Add($"pid {process.Pid}: mm_struct at 0x{process.Mm:X} is not readable");
                continue;
            }
            if (end <= start)
            {
                continue;
            }
            int maxBytes = AnalysisLimits.Default.MaxEnvironmentBytes;
            if (end - start > (ulong)maxBytes)
            {
                notes.Add($"pid {process.Pid}: environment 0x{start:X}..0x{end:X} is larger than {maxBytes} bytes: truncated");
            }
            byte[] block = new byte[(int)Math.Min((ulong)maxBytes, end - start)];
            int got = context.ProcessSpace(pgd).Read(start, block);
            if (got < block.Length)
            {
                notes.Add($"pid {process.Pid}: environment at 0x{start + (ulong)got:X} is not in the capture (paged out?): {got} of {block.Length} bytes read");
            }
            foreach (string entry in Split(block.AsSpan(0, got)))
            {
                int eq = entry.IndexOf('=', StringComparison.Ordinal);
                rows.Add(eq >= 0 ? new LinuxEnvVar(process.Pid, process.Comm, entry[..eq], entry[(eq + 1)..])
                    : new LinuxEnvVar(process.Pid, process.Comm, entry, ""));
            }
        }
        return (rows, notes);
    }

    /// <summary>linux.envars.</summary>
    public static RowsReport<LinuxEnvVar> Envars(LinuxContext context, ISet<int>? pids = null, CancellationToken ct = default)
    {
        (List<LinuxEnvVar> rows, List<string> notes) = List(context, pids, ct);
        return new RowsReport<LinuxEnvVar>("linux.envars", rows, notes);
    }

    private static List<string> Split(ReadOnlySpan<byte> block)
    {
        var entries = new List<string>();
        while (block.Length > 0)
        {
            int nul = block.IndexOf((byte)0);
            ReadOnlySpan<byte> entry = nul >= 0 ? block[..nul] : block;
            if (entry.Length > 0)
            {
                entries.Add(Encoding.UTF8.GetString(entry));
            }
            block = nul >= 0 ? block[(nul + 1)..] : [];
        }
        return entries;
    }
}
