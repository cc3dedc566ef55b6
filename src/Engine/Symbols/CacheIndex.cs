using System.Buffers.Binary;
using System.Text;

namespace CloudMem.Engine.Symbols;

/// <summary>
/// A read-only table of UTF-8 strings inside a profile-cache payload (count, offsets, bytes), decoded on demand
/// (each string once). Out-of-range indices and offsets read as "" rather than throwing: the payload passed its
/// checksum, so they only happen with a bug, and a lookup must never crash an analysis.
/// </summary>
internal sealed class StringTable
{
    private readonly byte[] _data;
    private readonly int _offsetsAt;
    private readonly int _bytesAt;
    private readonly int _bytesLength;
    private readonly string?[] _strings;

    private StringTable(byte[] data, int offsetsAt, int count, int bytesAt, int bytesLength)
    {
        _data = data;
        _offsetsAt = offsetsAt;
        _bytesAt = bytesAt;
        _bytesLength = bytesLength;
        _strings = new string?[count];
    }

    public int Count => _strings.Length;

    /// <summary>Writes <paramref name="strings"/>: count, count + 1 offsets, then the bytes.</summary>
    public static void Write(CacheWriter writer, IReadOnlyList<string> strings)
    {
        var bytes = new CacheWriter();
        writer.Int32(strings.Count);
        int offset = 0;
        foreach (string text in strings)
        {
            writer.Int32(offset);
            byte[] utf8 = Encoding.UTF8.GetBytes(text);
            bytes.Bytes(utf8);
            offset += utf8.Length;
        }
        writer.Int32(offset);
        byte[] all = bytes.ToArray();
        writer.Int32(all.Length);
        writer.Bytes(all);
    }

    public static StringTable Read(CacheReader reader)
    {
        int count = reader.Count(4);
        int offsetsAt = reader.Skip(4 * (count + 1));
        int length = reader.Count(1);
        int bytesAt = reader.Skip(length);
        return new StringTable(reader.Data, offsetsAt, count, bytesAt, length);
    }

    /// <summary>The UTF-8 bytes of string <paramref name="index"/>.</summary>
    public ReadOnlySpan<byte> Bytes(int index)
    {
        if ((uint)index >= (uint)_strings.Length)
        {
            return default;
        }
        int start = BinaryPrimitives.ReadInt32LittleEndian(_data.AsSpan(_offsetsAt + 4 * index));
        int end = BinaryPrimitives.ReadInt32LittleEndian(_data.AsSpan(_offsetsAt + 4 * index + 4));
        return start < 0 || end < start || end > _bytesLength ? default : _data.AsSpan(_bytesAt + start, end - start);
    }

    public string this[int index]
    {
        get
        {
            if ((uint)index >= (uint)_strings.Length)
            {
                return "";
            }
            return Volatile.Read(ref _strings[index]) ?? (_strings[index] = Encoding.UTF8.GetString(Bytes(index)));
        }
    }
}

/// <summary>
/// Names to integers, sorted by UTF-8 bytes and found by binary search in the payload: no dictionary is built when an
/// entry is read, so a lookup costs a few comparisons however many names the table has.
/// </summary>
internal sealed class NameIndex
{
    private readonly SortedNames _names;

    private NameIndex(SortedNames names) => _names = names;

    /// <summary>Writes (string index, value) pairs sorted by the strings' UTF-8 bytes; the first value of a name wins.</summary>
    public static void Write(CacheWriter writer, IEnumerable<(string Name, int NameIndex, int Value)> entries)
        => SortedNames.Write(writer, entries, e => e.Name, e => { writer.Int32(e.NameIndex); writer.Int32(e.Value); });

    public static NameIndex Read(CacheReader reader, StringTable strings) => new(SortedNames.Read(reader, strings, 8));

    public bool TryGet(string name, out int value)
    {
        int entry = _names.Find(name);
        value = entry < 0 ? -1 : BinaryPrimitives.ReadInt32LittleEndian(_names.Data.AsSpan(entry + 4));
        return entry >= 0;
    }
}

/// <summary>
/// A model's symbols (name to address) as a sorted table in the payload: <see cref="TryGetValue"/> is a binary search
/// over the bytes, so opening a cached Windows kernel model no longer makes 40,000 strings and a dictionary for the
/// handful of symbols a plugin asks for. Enumerating (rare: reverse lookups) makes the names once.
/// </summary>
internal sealed class SymbolIndex : IReadOnlyDictionary<string, ulong>
{
    private const int EntryBytes = 12;
    private readonly SortedNames _names;

    private SymbolIndex(SortedNames names) => _names = names;

    /// <summary>Writes (string index, address) entries sorted by the names' UTF-8 bytes; the first of a name wins.</summary>
    public static void Write(CacheWriter writer, IEnumerable<(string Name, int NameIndex, ulong Address)> entries)
        => SortedNames.Write(writer, entries, e => e.Name, e => { writer.Int32(e.NameIndex); writer.Int64((long)e.Address); });

    public static SymbolIndex Read(CacheReader reader, StringTable strings) => new(SortedNames.Read(reader, strings, EntryBytes));

    public int Count => _names.Count;

    public ulong this[string key] => TryGetValue(key, out ulong value) ? value : throw new KeyNotFoundException($"no symbol '{key}'");

    public IEnumerable<string> Keys => this.Select(p => p.Key);

    public IEnumerable<ulong> Values => this.Select(p => p.Value);

    public bool ContainsKey(string key) => _names.Find(key) >= 0;

    public bool TryGetValue(string key, out ulong value)
    {
        int entry = _names.Find(key);
        value = entry < 0 ? 0 : BinaryPrimitives.ReadUInt64LittleEndian(_names.Data.AsSpan(entry + 4));
        return entry >= 0;
    }

    public IEnumerator<KeyValuePair<string, ulong>> GetEnumerator()
    {
        for (int i = 0; i < _names.Count; i++)
        {
            int entry = _names.EntryAt(i);
            yield return new(_names.NameAt(entry), BinaryPrimitives.ReadUInt64LittleEndian(_names.Data.AsSpan(entry + 4)));
        }
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}

/// <summary>Fixed-size entries in a payload that start with a string index, sorted by those strings' UTF-8 bytes.</summary>
internal readonly struct SortedNames(byte[] data, int at, int count, int stride, StringTable strings)
{
    public byte[] Data => data;

    public int Count => count;

    public static SortedNames Read(CacheReader reader, StringTable strings, int stride)
    {
        int count = reader.Count(stride);
        return new SortedNames(reader.Data, reader.Skip(stride * count), count, stride, strings);
    }

    /// <summary>Writes the count, then each entry (first of each name only) in UTF-8 byte order of the names.</summary>
    public static void Write<T>(CacheWriter writer, IEnumerable<T> entries, Func<T, string> name, Action<T> write)
    {
        List<T> sorted = Sort(entries, name);
        writer.Int32(sorted.Count);
        sorted.ForEach(write);
    }

    private static List<T> Sort<T>(IEnumerable<T> entries, Func<T, string> name)
    {
        var keyed = new List<(byte[] Key, T Entry)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (T entry in entries)
        {
            if (seen.Add(name(entry)))
            {
                keyed.Add((Encoding.UTF8.GetBytes(name(entry)), entry));
            }
        }
        keyed.Sort((a, b) => a.Key.AsSpan().SequenceCompareTo(b.Key));
        return keyed.ConvertAll(k => k.Entry);
    }

    public int EntryAt(int index) => at + stride * index;

    public string NameAt(int entry) => strings[BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(entry))];

    /// <summary>The payload position of the entry named <paramref name="name"/>, or -1.</summary>
    public int Find(string name)
    {
        Span<byte> key = name.Length <= 256 ? stackalloc byte[name.Length * 3] : new byte[Encoding.UTF8.GetMaxByteCount(name.Length)];
        key = key[..Encoding.UTF8.GetBytes(name, key)];
        int low = 0;
        int high = count - 1;
        while (low <= high)
        {
            int middle = (low + high) >>> 1;
            int entry = at + stride * middle;
            int compared = strings.Bytes(BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(entry))).SequenceCompareTo(key);
            if (compared == 0)
            {
                return entry;
            }
            if (compared < 0)
            {
                low = middle + 1;
            }
            else
            {
                high = middle - 1;
            }
        }
        return -1;
    }
}
