using CloudMem.Engine.Paging;
using CloudMem.RemoteCaptures;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Remote;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>
/// The shared capture-opening path of every command: a local path is mapped in place; an s3://, Azure blob or
/// http(s) address is read in place through the block cache (<see cref="RemoteCaptureOpener"/>). Cache size and
/// --stats come from the running command's <see cref="CaptureSettings"/>, handed over by <see cref="CaptureStatsInterceptor"/>.
/// </summary>
internal static class CaptureOpening
{
    private static readonly Lock s_lock = new();
    private static readonly List<(string Image, RunMappedMemory Memory)> s_opened = [];
    private static CaptureSettings? s_current;

    /// <summary>Opens <paramref name="image"/> (a path or a remote address), as <paramref name="format"/> when given.</summary>
    public static RunMappedMemory Open(string image, string? format)
    {
        RunMappedMemory memory;
        if (RemoteLocation.IsRemote(image))
        {
            var options = RemoteReadOptions.Default;
            if (Volatile.Read(ref s_current) is { RemoteCacheMiB: int mib })
            {
                options = options with { CacheBytes = (long)mib << 20 };
            }
            memory = RemoteCaptureOpener.Open(image, options, format);
        }
        else
        {
            memory = format is null ? CaptureOpener.Open(image) : CaptureOpener.OpenAs(image, format);
        }
        lock (s_lock)
        {
            s_opened.Add((image, memory));
        }
        return memory;
    }

    internal static void Begin(CaptureSettings? settings)
    {
        Volatile.Write(ref s_current, settings);
        lock (s_lock)
        {
            s_opened.Clear();
        }
    }

    /// <summary>
    /// Two lines per capture the command opened: what reading it cost (remote), or that it was local; and what the
    /// page-table walks read (the shared <see cref="PageTableCache"/>).
    /// </summary>
    internal static void WriteStats(TextWriter error)
    {
        lock (s_lock)
        {
            foreach ((string image, RunMappedMemory memory) in s_opened)
            {
                RemoteReadStats? stats = memory.RemoteStats;
                error.WriteLine(stats is null ? $"cloudmem: stats: {image}: local file, read in place (no remote fetches)" : $"cloudmem: stats: {stats}");
                error.WriteLine($"cloudmem: stats: {PageTableCache.SharedFor(memory)}");
            }
        }
    }
}

/// <summary>Hands the command's capture settings to <see cref="CaptureOpening"/> and prints --stats (to stderr) when it ends.</summary>
internal sealed class CaptureStatsInterceptor : ICommandInterceptor
{
    public void Intercept(CommandContext context, CommandSettings settings) => CaptureOpening.Begin(settings as CaptureSettings);

    public void InterceptResult(CommandContext context, CommandSettings settings, ref int result)
    {
        if (settings is CaptureSettings { Stats: true })
        {
            CaptureOpening.WriteStats(Console.Error);
        }
    }
}
