using CloudMem.VmStateParsers;

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
/// Symbol directories searched for the symbols of a Windows PDB, in two layouts, GUID and names matched
/// case-insensitively: Volatility 3's ISF tables <c>DIR/windows/&lt;pdb name&gt;/&lt;GUID&gt;-&lt;age&gt;.json.xz</c>
/// (or <c>.json</c>), then the PDB itself as a symbol server (and its caches) lays it out:
/// <c>DIR/&lt;pdb name&gt;/&lt;GUID&gt;&lt;age in hex&gt;/&lt;pdb name&gt;</c>. <see cref="Load"/> reads either, by content.
/// </summary>
/// <remarks>Immutable and thread-safe. Lookups only read directory listings; nothing is created or downloaded unless
/// the store was given a <see cref="SymbolServerClient"/> (the user's explicit <c>--symbol-server</c>), which is asked
/// only when no directory holds the symbols, and which downloads into its cache directory.</remarks>
public sealed class SymbolStore
{
    private static readonly string[] s_extensions = [".json.xz", ".json"];

    /// <summary>A store over <paramref name="directories"/>, searched in order.</summary>
    /// <param name="directories">Symbol directories.</param>
    /// <param name="server">A symbol server asked when no directory holds the symbols; null (the default) never
    /// touches the network.</param>
    /// <param name="cache">Where parsed type models are kept between commands (<see cref="LoadTypes"/>); null (the
    /// default): parse every time.</param>
    public SymbolStore(IEnumerable<string> directories, SymbolServerClient? server = null, ProfileCache? cache = null)
    {
        ArgumentNullException.ThrowIfNull(directories);
        Directories = directories.Where(d => d.Length > 0).Select(Path.GetFullPath).Distinct(StringComparer.Ordinal).ToList();
        Server = server;
        Cache = cache;
    }

    /// <summary>The profile cache used by <see cref="LoadTypes"/>, or null.</summary>
    public ProfileCache? Cache { get; }

    /// <summary><see cref="Load"/> through the store's <see cref="Cache"/>: the model parsed before from a file with the
    /// same content is read back from the cache (an entry that is damaged or for other content is rebuilt).</summary>
    /// <param name="path">The symbol file.</param>
    /// <param name="description">What it is, for <c>cache list</c> (e.g. "ntkrnlmp.pdb GUID-age").</param>
    public TypeModel LoadTypes(string path, string? description = null)
        => Cache is null ? Load(path) : Cache.GetTypes(path, file => Load(file), description);

    /// <summary>The directories searched, in order.</summary>
    public IReadOnlyList<string> Directories { get; }

    /// <summary>The symbol server asked last, or null.</summary>
    public SymbolServerClient? Server { get; }

    /// <summary>Loads a symbol file found by <see cref="FindWindows"/>: a PDB (MSF 7.00 signature) with
    /// <see cref="PdbLoader"/>, anything else as an ISF with <see cref="IsfLoader"/>. Chosen by content, not by name.</summary>
    /// <exception cref="SymbolFormatException">The file is neither a readable PDB nor a readable ISF.</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static TypeModel Load(string path, ParserLimits? limits = null)
    {
        Span<byte> head = stackalloc byte[32];
        int got;
        using (var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read))
        {
            got = file.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        }
        return PdbLoader.IsPdb(head[..got]) ? PdbLoader.Load(path, limits) : IsfLoader.Load(path, limits);
    }

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

    /// <summary>The directories given by the user (e.g. <c>--symbols</c>), then the per-user cache; with
    /// <paramref name="symbolServer"/> (the user's <c>--symbol-server</c>), PDBs missing from all of them are downloaded
    /// from that server into the per-user cache.</summary>
    /// <exception cref="ArgumentException">A symbol server was given but no per-user cache directory is known (no HOME).</exception>
    /// <param name="directories">Symbol directories given by the user.</param>
    /// <param name="symbolServer">The user's symbol server, or null.</param>
    /// <param name="cache">The profile cache for parsed type models, or null.</param>
    public static SymbolStore WithUserCache(IEnumerable<string> directories, Uri? symbolServer = null, ProfileCache? cache = null)
    {
        string? directory = UserCacheDirectory();
        if (symbolServer is not null && directory is null)
        {
            throw new ArgumentException("--symbol-server needs a per-user cache directory to download into, but neither XDG_CACHE_HOME nor HOME is set");
        }
        return new SymbolStore(directory is null ? directories : directories.Append(directory),
            symbolServer is null ? null : new SymbolServerClient(symbolServer, directory!), cache);
    }

    /// <summary>Looks for the table of a Windows PDB identified by name, GUID (32 hex digits) and age: in each
    /// directory an ISF table, then the PDB in the symbol-server layout; last, when the store has a
    /// <see cref="Server"/>, a download from it (its URL, and why it failed, are listed among the paths tried).</summary>
    /// <returns>The path found, or null with every path tried. Never throws for unreadable or missing directories or
    /// for a failed download.</returns>
    public SymbolLookup FindWindows(string pdbName, string guid, uint age, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(pdbName);
        ArgumentException.ThrowIfNullOrEmpty(guid);
        string stem = $"{guid.ToUpperInvariant()}-{age}";
        string key = SymbolServerClient.Key(guid, age);
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
            if (FindPdb(root, pdbName, key, tried) is { } pdb)
            {
                return new SymbolLookup(pdb, tried);
            }
        }
        if (Server is not null && SymbolServerClient.IsPlainFileName(pdbName))
        {
            Uri url = Server.UrlFor(pdbName, guid, age);
            try
            {
                string path = Server.Download(pdbName, guid, age, cancellationToken);
                tried.Add(url.ToString());
                return new SymbolLookup(path, tried);
            }
            catch (SymbolServerException e)
            {
                tried.Add(e.Message);
            }
        }
        return new SymbolLookup(null, tried);
    }

    /// <summary><c>root/&lt;pdb&gt;/&lt;GUID&gt;&lt;age hex&gt;/&lt;pdb&gt;</c>, names matched ignoring case.</summary>
    private static string? FindPdb(string root, string pdbName, string key, List<string> tried)
    {
        if (!SymbolServerClient.IsPlainFileName(pdbName))
        {
            return null;   // a name with path separators would leave the directory
        }
        string expected = Path.Combine(root, pdbName, key, pdbName);
        tried.Add(expected);
        if (File.Exists(expected))
        {
            return expected;
        }
        string? pdbDir = FindEntry(root, pdbName, wantDirectory: true);
        string? keyDir = pdbDir is null ? null : FindEntry(pdbDir, key, wantDirectory: true);
        string? found = keyDir is null ? null : FindEntry(keyDir, pdbName, wantDirectory: false);
        if (found is not null)
        {
            tried.Add(found);
        }
        return found;
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
