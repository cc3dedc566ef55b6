namespace CloudMem.Engine.Symbols;

/// <summary>The outcome of <see cref="SymbolStore.FindWindows"/>.</summary>
/// <param name="Path">The file found, or null.</param>
/// <param name="Tried">Every path looked at, in order (the found one last).</param>
public sealed record SymbolLookup(string? Path, IReadOnlyList<string> Tried)
{
    /// <summary>True when a file was found.</summary>
    public bool Found => Path is not null;
}

/// <summary>
/// Symbol directories searched for Windows ISF tables laid out as Volatility 3 stores them:
/// <c>DIR/windows/&lt;pdb name&gt;/&lt;GUID&gt;-&lt;age&gt;.json.xz</c> (or <c>.json</c>), GUID and names matched
/// case-insensitively.
/// </summary>
/// <remarks>Immutable and thread-safe. Lookups only read directory listings; nothing is created or downloaded.</remarks>
public sealed class SymbolStore
{
    private static readonly string[] s_extensions = [".json.xz", ".json"];

    /// <summary>A store over <paramref name="directories"/>, searched in order.</summary>
    public SymbolStore(IEnumerable<string> directories)
    {
        ArgumentNullException.ThrowIfNull(directories);
        Directories = directories.Where(d => d.Length > 0).Select(Path.GetFullPath).Distinct(StringComparer.Ordinal).ToList();
    }

    /// <summary>The directories searched, in order.</summary>
    public IReadOnlyList<string> Directories { get; }

    /// <summary>The per-user cache: <c>${XDG_CACHE_HOME:-~/.cache}/cloudmem/symbols</c>; null when no home is known.</summary>
    public static string? UserCacheDirectory()
    {
        string? cache = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        if (cache is not { Length: > 0 } || !Path.IsPathRooted(cache))
        {
            string? home = Environment.GetEnvironmentVariable("HOME");
            if (home is not { Length: > 0 })
            {
                home = Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            }
            if (home is not { Length: > 0 })
            {
                return null;
            }
            cache = Path.Combine(home, ".cache");
        }
        return Path.Combine(cache, "cloudmem", "symbols");
    }

    /// <summary>The directories given by the user (e.g. <c>--symbols</c>), then the per-user cache.</summary>
    public static SymbolStore WithUserCache(IEnumerable<string> directories)
    {
        string? cache = UserCacheDirectory();
        return new SymbolStore(cache is null ? directories : directories.Append(cache));
    }

    /// <summary>Looks for the table of a Windows PDB identified by name, GUID (32 hex digits) and age.</summary>
    /// <returns>The path found, or null with every path tried. Never throws for unreadable or missing directories.</returns>
    public SymbolLookup FindWindows(string pdbName, string guid, uint age)
    {
        ArgumentException.ThrowIfNullOrEmpty(pdbName);
        ArgumentException.ThrowIfNullOrEmpty(guid);
        string stem = $"{guid.ToUpperInvariant()}-{age}";
        var tried = new List<string>();
        foreach (string root in Directories)
        {
            string windows = Path.Combine(root, "windows");
            string pdbDir = FindEntry(windows, pdbName, wantDirectory: true) ?? Path.Combine(windows, pdbName);
            foreach (string extension in s_extensions)
            {
                string expected = Path.Combine(pdbDir, stem + extension);
                tried.Add(expected);
                string? found = File.Exists(expected) ? expected : FindEntry(pdbDir, stem + extension, wantDirectory: false);
                if (found is not null)
                {
                    if (found != expected)
                    {
                        tried.Add(found);
                    }
                    return new SymbolLookup(found, tried);
                }
            }
        }
        return new SymbolLookup(null, tried);
    }

    /// <summary>An entry of <paramref name="directory"/> named <paramref name="name"/> ignoring case (exact name preferred).</summary>
    private static string? FindEntry(string directory, string name, bool wantDirectory)
    {
        try
        {
            string exact = Path.Combine(directory, name);
            if (wantDirectory ? Directory.Exists(exact) : File.Exists(exact))
            {
                return exact;
            }
            if (!Directory.Exists(directory))
            {
                return null;
            }
            IEnumerable<string> entries = wantDirectory ? Directory.EnumerateDirectories(directory) : Directory.EnumerateFiles(directory);
            return entries.FirstOrDefault(e => string.Equals(Path.GetFileName(e), name, StringComparison.OrdinalIgnoreCase));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }
}
