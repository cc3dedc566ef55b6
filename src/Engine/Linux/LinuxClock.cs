using CloudMem.Engine.Paging;

namespace CloudMem.Engine.Linux;

/// <summary>
/// The wall-clock time at which the kernel's monotonic clock was zero (boot), from the timekeeper the kernel keeps in
/// <c>tk_core</c>: <c>offs_real</c> is CLOCK_REALTIME minus CLOCK_MONOTONIC in nanoseconds. Process start times
/// (<c>task_struct.start_time</c>) are monotonic, so start = boot + start_time; the printk clock of dmesg runs within
/// a fraction of a second of it.
/// </summary>
public static class LinuxClock
{
    // tk_core is an anonymous { seqcount_raw_spinlock_t seq; struct timekeeper timekeeper; } (no type information names
    // it): the timekeeper follows the sequence count at offset 8, or further with lock debugging; each candidate is
    // checked by the timekeeper's own identity realtime seconds = monotonic seconds + offs_real.
    private static readonly int[] s_timekeeperOffsets = [8, 16, 32, 64];

    private static readonly long s_earliest = new DateTimeOffset(2000, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeSeconds();
    private static readonly long s_latest = new DateTimeOffset(2200, 1, 1, 0, 0, 0, TimeSpan.Zero).ToUnixTimeSeconds();

    /// <summary>The wall-clock time of the monotonic clock's zero, or null with the reason in <paramref name="why"/>.</summary>
    public static DateTimeOffset? BootTime(LinuxContext context, out string? why)
    {
        ArgumentNullException.ThrowIfNull(context);
        if (!context.Kernel.Symbols.TryGetAddress("tk_core", out ulong tkCore))
        {
            why = "the kernel's symbols have no tk_core (the timekeeper)";
            return null;
        }
        if (!context.Types.TryGetOffset("timekeeper", "offs_real", out int offsReal) || !context.Types.TryGetOffset("timekeeper", "xtime_sec", out int xtimeSec)
            || !context.Types.TryGetOffset("timekeeper", "ktime_sec", out int ktimeSec))
        {
            why = $"the type information ({context.Types.Source}) lacks timekeeper.offs_real, xtime_sec or ktime_sec";
            return null;
        }
        IVirtualMemory k = context.Kernel.Kernel;
        foreach (int at in s_timekeeperOffsets)
        {
            ulong tk = tkCore + (ulong)at;
            if (!k.TryReadUInt64(tk + (ulong)offsReal, out ulong real) || !k.TryReadUInt64(tk + (ulong)xtimeSec, out ulong wall)
                || !k.TryReadUInt64(tk + (ulong)ktimeSec, out ulong mono))
            {
                continue;
            }
            long realNs = unchecked((long)real), wallSec = unchecked((long)wall), monoSec = unchecked((long)mono);
            long bootSec = realNs / 1_000_000_000;
            if (bootSec < s_earliest || bootSec > s_latest || wallSec < bootSec || monoSec < 0 || Math.Abs(wallSec - (monoSec + bootSec)) > 2)
            {
                continue;
            }
            why = null;
            return DateTimeOffset.FromUnixTimeMilliseconds(realNs / 1_000_000);
        }
        why = $"tk_core at 0x{tkCore:X} holds no consistent timekeeper (realtime = monotonic + offs_real) at any expected offset";
        return null;
    }
}
