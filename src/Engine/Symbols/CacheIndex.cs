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
    private readonly byte[] _data;
    private readonly int _at;
    private readonly int _count;
    private readonly StringTable _strings;

    private NameIndex(byte[] data, int at, int count, StringTable strings)
    {
        _data = data;
        _at = at;
        _count = count;
        _strings = strings;
    }

    /// <summary>Writes (string index, value) pairs sorted by the strings' UTF-8 bytes; the first value of a name wins.</summary>
    public static void Write(CacheWriter writer, IEnumerable<(string Name, int NameIndex, int Value)> entries)
    {
        var sorted = new List<(byte[] Key, int Name, int Value)>();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach ((string name, int nameIndex, int value) in entries)
        {
            if (seen.Add(name))
            {
                sorted.Add((Encoding.UTF8.GetBytes(name), nameIndex, value));
            }
        }
        sorted.Sort((a, b) => a.Key.AsSpan().SequenceCompareTo(b.Key));
        writer.Int32(sorted.Count);
        foreach ((_, int name, int value) in sorted)
        {
            writer.Int32(name);
            writer.Int32(value);
        }
    }

    public static NameIndex Read(CacheReader reader, StringTable strings)
    {
        int count = reader.Count(8);
        return new NameIndex(reader.Data, reader.Skip(8 * count), count, strings);
    }

    public bool TryGet(string name, out int value)
    {
        Span<byte> key = name.Length <= 256 ? stackalloc byte[name.Length * 3] : new byte[Encoding.UTF8.GetMaxByteCount(name.Length)];
        key = key[..Encoding.UTF8.GetBytes(name, key)];
        int low = 0;
        int high = _count - 1;
        while (low <= high)
        {
            int middle = (low + high) >>> 1;
            int entry = _at + 8 * middle;
            int compared = _strings.Bytes(BinaryPrimitives.ReadInt32LittleEndian(_data.AsSpan(entry))).SequenceCompareTo(key);
            if (compared == 0)
            {
                value = BinaryPrimitives.ReadInt32LittleEndian(_data.AsSpan(entry + 4));
                return true;
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
        value = -1;
        return false;
    }
}
