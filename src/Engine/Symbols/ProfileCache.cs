using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace CloudMem.Engine.Symbols;

/// <summary>One file of the profile cache, as <see cref="ProfileCache.List"/> shows it.</summary>
/// <param name="Path">The file.</param>
/// <param name="Kind">What it holds ("types": a symbol file's type model; "linux": a kernel build's kallsyms and BTF).</param>
/// <param name="Description">What it was made from (PDB name, GUID and age; the kernel banner), or why it is unusable.</param>
/// <param name="Bytes">File size.</param>
/// <param name="Written">Last write time (UTC).</param>
/// <param name="Valid">False when the header is not ours or of another version (the entry would be rebuilt).</param>
public sealed record ProfileCacheEntry(string Path, string Kind, string Description, long Bytes, DateTimeOffset Written, bool Valid);

/// <summary>
/// The per-user cache of what is derived once per kernel build: a symbol file's parsed type model (keyed by the file's
/// XxHash128, so a changed file is a new entry) and a Linux kernel's kallsyms and BTF type model (keyed by its banner),
/// stored in a compact binary form and read back on the next command instead of decompressing and parsing again.
/// </summary>
/// <remarks>
/// <para>Every entry starts with a header: magic, format version, payload length and the XxHash128 of key, description
/// and payload. An entry that is truncated, altered, of another version or made for another key is never trusted:
/// reading it reports a miss and the caller rebuilds (and rewrites) it; nothing about a bad entry throws. Writes go
/// to a temporary file moved into place, so concurrent commands see either the old or the new entry. The checksum is
/// a guard against damage, not a signature (whoever can write the user's cache can change anything the user runs):
/// XxHash128 rather than SHA-256, because the first SHA-256 of a process loads OpenSSL and, with the hashing of a
/// 10 MB entry, cost a short command about 20 ms.</para>
/// <para>Directory: <c>CLOUDMEM_CACHE_DIR</c> when set, else <c>${XDG_CACHE_HOME:-~/.cache}/cloudmem/profiles</c>.
/// Thread-safe (no mutable state besides the files).</para>
/// </remarks>
public sealed class ProfileCache
{
    /// <summary>The entry format version; entries of another version are rebuilt.</summary>
    public const int FormatVersion = 3;

    private const string Extension = ".profile";
    private const int HeaderBytes = 8 + 4 + 4 + 8 + 32;
    private const int ChecksumBytes = 16;   // XxHash128 in the first 16 of the 32 checksum bytes, zeros after
    private static ReadOnlySpan<byte> Magic => "CMPROF\0\0"u8;

    /// <summary>A cache in <paramref name="directory"/> (created on the first write).</summary>
    public ProfileCache(string directory)
    {
        ArgumentException.ThrowIfNullOrEmpty(directory);
        Directory = System.IO.Path.GetFullPath(directory);
    }

    /// <summary>Where the entries are.</summary>
    public string Directory { get; }

    /// <summary>Bytes above which an entry is not read (a damaged length field must not allocate gigabytes).</summary>
    public static long MaxEntryBytes { get; } = 512L << 20;

    /// <summary><c>CLOUDMEM_CACHE_DIR</c>, else <c>${XDG_CACHE_HOME:-~/.cache}/cloudmem/profiles</c>; null when no home
    /// directory is known.</summary>
    public static string? DefaultDirectory()
    {
        string? explicitDirectory = Environment.GetEnvironmentVariable("CLOUDMEM_CACHE_DIR");
        if (explicitDirectory is { Length: > 0 })
        {
            return explicitDirectory;
        }
        string? symbols = SymbolStore.UserCacheDirectory();
        return symbols is null ? null : System.IO.Path.Combine(System.IO.Path.GetDirectoryName(symbols)!, "profiles");
    }

    /// <summary>The cache in <see cref="DefaultDirectory"/>, or null when there is none.</summary>
    public static ProfileCache? Default() => DefaultDirectory() is { } directory ? new ProfileCache(directory) : null;

    /// <summary>
    /// The type model of the symbol file at <paramref name="path"/>: from the cache when an entry for the file's
    /// content is there and intact, else parsed by <paramref name="load"/> and stored.
    /// </summary>
    /// <param name="path">An ISF or PDB file.</param>
    /// <param name="load">The loader (e.g. <see cref="SymbolStore.Load"/>), called on a miss.</param>
    /// <param name="description">What the file is, for <c>cache list</c> (e.g. "ntkrnlmp.pdb GUID-age").</param>
    public TypeModel GetTypes(string path, Func<string, TypeModel> load, string? description = null)
    {
        ArgumentNullException.ThrowIfNull(load);
        string key = "types|" + HashFile(path);
        if (TryRead("types", key, out CacheReader payload) && TypeModelCodec.TryDecode(payload, out TypeModel? cached, out _))
        {
            return cached!;
        }
        TypeModel types = load(path);
        Write("types", key, description ?? System.IO.Path.GetFileName(path), TypeModelCodec.Encode(types));
        return types;
    }

    /// <summary>Every entry file (by name), with what its header says.</summary>
    public IReadOnlyList<ProfileCacheEntry> List()
    {
        var entries = new List<ProfileCacheEntry>();
        if (!System.IO.Directory.Exists(Directory))
        {
            return entries;
        }
        foreach (string file in System.IO.Directory.EnumerateFiles(Directory, "*" + Extension).Order(StringComparer.Ordinal))
        {
            var info = new FileInfo(file);
            string kind = System.IO.Path.GetFileName(file).Split('-')[0];
            (bool valid, string description) = ReadDescription(file);
            entries.Add(new ProfileCacheEntry(file, kind, description, info.Length, new DateTimeOffset(info.LastWriteTimeUtc, TimeSpan.Zero), valid));
        }
        return entries;
    }

    /// <summary>Deletes every entry (and leftover temporary files); returns how many files were deleted.</summary>
    public int Clear()
    {
        if (!System.IO.Directory.Exists(Directory))
        {
            return 0;
        }
        int deleted = 0;
        foreach (string file in System.IO.Directory.EnumerateFiles(Directory))
        {
            string name = System.IO.Path.GetFileName(file);
            if (name.EndsWith(Extension, StringComparison.Ordinal) || name.Contains(Extension + ".tmp", StringComparison.Ordinal))
            {
                File.Delete(file);
                deleted++;
            }
        }
        return deleted;
    }

    /// <summary>The file an entry of <paramref name="kind"/> for <paramref name="key"/> lives in.</summary>
    internal string PathFor(string kind, string key)
        => System.IO.Path.Combine(Directory, $"{kind}-{System.Convert.ToHexStringLower(XxHash128.Hash(Encoding.UTF8.GetBytes(key)))[..24]}{Extension}");

    /// <summary>The payload of the entry for <paramref name="key"/>, as a reader over the file's bytes; false (a miss)
    /// when it is absent, unreadable, of another version or key, or its checksum does not match.</summary>
    internal bool TryRead(string kind, string key, out CacheReader payload)
    {
        payload = new CacheReader([]);
        byte[] file;
        try
        {
            string path = PathFor(kind, key);
            var info = new FileInfo(path);
            if (!info.Exists || info.Length < HeaderBytes || info.Length > MaxEntryBytes)
            {
                return false;
            }
            file = File.ReadAllBytes(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return false;
        }
        if (!IsIntact(file))
        {
            return false;
        }
        var reader = new CacheReader(file, HeaderBytes);
        if (!reader.TryString(out string? storedKey) || storedKey != key || !reader.TryString(out _))
        {
            return false;
        }
        payload = reader;
        return true;
    }

    /// <summary>Stores an entry (temporary file, then a move over any old one). Failures to write are ignored: the
    /// cache only saves time, and a read-only home must not stop an analysis.</summary>
    internal void Write(string kind, string key, string description, byte[] payload)
    {
        string path = PathFor(kind, key);
        string temporary = $"{path}.tmp{Environment.ProcessId}-{Guid.NewGuid():N}";
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            var body = new CacheWriter();
            body.String(key);
            body.String(description);
            body.Bytes(payload);
            byte[] bytes = body.ToArray();
            byte[] header = new byte[HeaderBytes];
            Magic.CopyTo(header);
            BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(8), FormatVersion);
            BinaryPrimitives.WriteInt64LittleEndian(header.AsSpan(16), bytes.Length);
            XxHash128.Hash(bytes, header.AsSpan(24, ChecksumBytes));
            using (var stream = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write))
            {
                stream.Write(header);
                stream.Write(bytes);
            }
            File.Move(temporary, path, overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(temporary);
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (IOException)
        {
            // best effort: a leftover temporary file is removed by cache clear
        }
        catch (UnauthorizedAccessException)
        {
            // same
        }
    }

    private static bool IsIntact(byte[] file)
    {
        if (file.Length < HeaderBytes || !file.AsSpan(0, 8).SequenceEqual(Magic)
            || BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(8)) != FormatVersion)
        {
            return false;
        }
        long length = BinaryPrimitives.ReadInt64LittleEndian(file.AsSpan(16));
        if (length != file.Length - HeaderBytes)
        {
            return false;
        }
        Span<byte> hash = stackalloc byte[ChecksumBytes];
        XxHash128.Hash(file.AsSpan(HeaderBytes), hash);
        return hash.SequenceEqual(file.AsSpan(24, ChecksumBytes)) && !file.AsSpan(24 + ChecksumBytes, 32 - ChecksumBytes).ContainsAnyExcept((byte)0);
    }

    private static (bool Valid, string Description) ReadDescription(string file)
    {
        try
        {
            byte[] bytes = File.ReadAllBytes(file);
            if (!IsIntact(bytes))
            {
                return (false, "damaged or of another version (rebuilt on next use)");
            }
            var reader = new CacheReader(bytes, HeaderBytes);
            return reader.TryString(out _) && reader.TryString(out string? description) ? (true, description!) : (false, "damaged (rebuilt on next use)");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return (false, $"unreadable: {e.Message}");
        }
    }

    private static string HashFile(string path)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var hash = new XxHash128();
        hash.Append(stream);
        return System.Convert.ToHexStringLower(hash.GetCurrentHash());
    }
}
