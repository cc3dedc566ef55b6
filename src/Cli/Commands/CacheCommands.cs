using System.ComponentModel;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

[Description("List the profile cache's entries (what each was made from, size, when written); directory: CLOUDMEM_CACHE_DIR, else ${XDG_CACHE_HOME:-~/.cache}/cloudmem/profiles")]
internal sealed class CacheListCommand : Command<CommonSettings>
{
    public override int Execute(CommandContext context, CommonSettings settings, CancellationToken cancellationToken)
    {
        ProfileCache cache = ProfileCache.Default() ?? throw new InvalidOperationException("no cache directory: set CLOUDMEM_CACHE_DIR, XDG_CACHE_HOME or HOME");
        IReadOnlyList<ProfileCacheEntry> entries = cache.List();
        long total = entries.Sum(e => e.Bytes);
        ReportOutput.Write(new RowsReport<ProfileCacheEntry>("profile cache", entries, [$"{cache.Directory}: {entries.Count} entries, {total:N0} bytes"]),
            settings.OutputFormat, Console.Error);
        return (int)ExitCode.Ok;
    }
}

[Description("Delete every entry of the profile cache (the next command on each kernel build parses its symbols again)")]
internal sealed class CacheClearCommand : Command<CommonSettings>
{
    public override int Execute(CommandContext context, CommonSettings settings, CancellationToken cancellationToken)
    {
        ProfileCache cache = ProfileCache.Default() ?? throw new InvalidOperationException("no cache directory: set CLOUDMEM_CACHE_DIR, XDG_CACHE_HOME or HOME");
        int deleted = cache.Clear();
        Console.Out.WriteLine($"{cache.Directory}: {deleted} entries deleted");
        return (int)ExitCode.Ok;
    }
}
