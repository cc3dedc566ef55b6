using System.Collections.Concurrent;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace CloudMem.Engine.Core;

/// <summary>Where a plugin finds symbols: the command line's symbol options, as the engine takes them.</summary>
/// <param name="SymbolDirectories">Windows: directories searched for the kernel's ISF or PDB (then the per-user cache).</param>
/// <param name="SymbolServer">Windows: a symbol server to download missing PDBs from (opt-in), or null.</param>
/// <param name="IsfPath">Linux: a Volatility ISF used instead of the BTF found in memory, or null.</param>
/// <param name="SystemMapPath">Linux: a System.map used when kallsyms is not found, or null.</param>
/// <param name="Cache">The profile cache (parsed symbol files, a Linux build's kallsyms and BTF), or null to parse
/// everything again and write nothing (<c>--no-cache</c>).</param>
public sealed record SymbolOptions(
    IReadOnlyList<string> SymbolDirectories, Uri? SymbolServer = null, string? IsfPath = null, string? SystemMapPath = null,
    ProfileCache? Cache = null)
{
    /// <summary>The Windows symbol store of these options: the directories, then the per-user symbol cache, the
    /// symbol server if given, and the profile cache.</summary>
    public SymbolStore WindowsStore() => SymbolStore.WithUserCache(SymbolDirectories, SymbolServer, Cache);

    /// <summary>No symbol inputs (Linux from the image alone; Windows from the per-user cache).</summary>
    public static SymbolOptions None { get; } = new([]);
}

/// <summary>Receives progress of long steps (scans, conversions). Implementations must be thread-safe and cheap.</summary>
public interface IProgressSink
{
    /// <summary><paramref name="done"/> of <paramref name="total"/> units (bytes, pages) of <paramref name="stage"/>.</summary>
    void Report(string stage, long done, long total);
}

/// <summary>
/// One capture being analysed: its physical memory and symbol options, and a cache of what plugins derive from it
/// (the located kernel, its type model, the process list), so that running several plugins on one capture locates
/// the kernel once. Thread-safe. Does not own the memory.
/// </summary>
public sealed class PluginContext
{
    private readonly ConcurrentDictionary<Type, Lazy<object>> _services = new();

    /// <summary>Creates a context over <paramref name="memory"/>.</summary>
    public PluginContext(IPhysicalMemory memory, string source, SymbolOptions? symbols = null, IProgressSink? progress = null, ILogger? logger = null)
    {
        ArgumentNullException.ThrowIfNull(memory);
        Memory = memory;
        Source = source ?? "";
        Symbols = symbols ?? SymbolOptions.None;
        Progress = progress;
        Logger = logger ?? NullLogger.Instance;
    }

    /// <summary>Where the engine reports diagnostics (timings, decisions); the library never writes to the console.</summary>
    public ILogger Logger { get; }

    /// <summary>The capture's physical memory.</summary>
    public IPhysicalMemory Memory { get; }

    /// <summary>The capture's path or URL (for messages).</summary>
    public string Source { get; }

    /// <summary>Symbol inputs.</summary>
    public SymbolOptions Symbols { get; }

    /// <summary>Progress of long steps, or null.</summary>
    public IProgressSink? Progress { get; }

    /// <summary>
    /// The one <typeparamref name="T"/> of this capture, created by <paramref name="create"/> on first use (exactly once,
    /// even with concurrent callers). An exception from <paramref name="create"/> is thrown to every caller.
    /// </summary>
    public T Get<T>(Func<PluginContext, T> create) where T : class
    {
        ArgumentNullException.ThrowIfNull(create);
        return (T)_services.GetOrAdd(typeof(T), _ => new Lazy<object>(() => create(this), LazyThreadSafetyMode.ExecutionAndPublication)).Value;
    }
}
