using System.Buffers.Binary;
using System.Collections.ObjectModel;
using System.Text;

namespace CloudMem.Engine.Symbols;

/// <summary>Appends little-endian values and length-prefixed UTF-8 strings to a growing buffer (profile cache entries).</summary>
internal sealed class CacheWriter
{
    private byte[] _buffer = new byte[1 << 16];
    private int _length;

    public void Int32(int value) => BinaryPrimitives.WriteInt32LittleEndian(Grow(4), value);

    public void Int64(long value) => BinaryPrimitives.WriteInt64LittleEndian(Grow(8), value);

    public void Byte(byte value) => Grow(1)[0] = value;

    public void String(string value)
    {
        int bytes = Encoding.UTF8.GetByteCount(value);
        Int32(bytes);
        Encoding.UTF8.GetBytes(value, Grow(bytes));
    }

    public void Bytes(ReadOnlySpan<byte> value) => value.CopyTo(Grow(value.Length));

    public int Length => _length;

    public byte[] ToArray() => _buffer.AsSpan(0, _length).ToArray();

    private Span<byte> Grow(int count)
    {
        if (_length + count > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, _length + count));
        }
        Span<byte> span = _buffer.AsSpan(_length, count);
        _length += count;
        return span;
    }
}

/// <summary>Reads what <see cref="CacheWriter"/> wrote; running past the end or an impossible length throws
/// <see cref="InvalidDataException"/> (the decoders turn that into a cache miss).</summary>
internal sealed class CacheReader(byte[] data, int position = 0, int end = -1)
{
    private readonly int _end = end < 0 ? data.Length : Math.Min(end, data.Length);
    private int _position = position;

    /// <summary>The whole payload (for tables read in place).</summary>
    public byte[] Data => data;

    /// <summary>Steps over <paramref name="count"/> bytes; returns where they start.</summary>
    public int Skip(int count)
    {
        int at = _position;
        Take(count);
        return at;
    }

    public bool AtEnd => _position == _end;

    public int Int32() => BinaryPrimitives.ReadInt32LittleEndian(Take(4));

    public long Int64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public byte Byte() => Take(1)[0];

    /// <summary>The next <paramref name="count"/> bytes, in place.</summary>
    public ReadOnlySpan<byte> Span(int count) => Take(count);

    /// <summary>A count that must fit the remaining bytes at <paramref name="bytesEach"/> bytes per item.</summary>
    public int Count(int bytesEach)
    {
        int count = Int32();
        if (count < 0 || (long)count * bytesEach > _end - _position)
        {
            throw new InvalidDataException($"count {count} at {_position - 4} exceeds the entry");
        }
        return count;
    }

    public string String()
    {
        int bytes = Count(1);
        return Encoding.UTF8.GetString(Take(bytes));
    }

    public bool TryString(out string? value)
    {
        try
        {
            value = String();
            return true;
        }
        catch (InvalidDataException)
        {
            value = null;
            return false;
        }
    }

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || count > _end - _position)
        {
            throw new InvalidDataException($"entry ends at {_end}, {count} bytes wanted at {_position}");
        }
        ReadOnlySpan<byte> span = data.AsSpan(_position, count);
        _position += count;
        return span;
    }
}

/// <summary>
/// A <see cref="TypeModel"/> as bytes and back: a string table, an offset table and one record per type (every type
/// reachable from the model, its list first), the name lookups of <see cref="TypeModel.FindStruct"/> and
/// <see cref="TypeModel.FindType"/> as sorted indexes, then the symbols. Decoding reads only the tables' positions:
/// a type's record is decoded when the type is first reached (<see cref="LazyTypeTable"/>), so a command that uses a
/// few hundred of a kernel's 100,000 types decodes a few hundred.
/// </summary>
internal static class TypeModelCodec
{
    /// <summary>Bytes of a record before its members: id, name, kind, size, signed, target, array length.</summary>
    internal const int FixedRecordBytes = 22;

    public static byte[] Encode(TypeModel model)
    {
        var writer = new CacheWriter();
        Encode(model, writer);
        return writer.ToArray();
    }

    public static void Encode(TypeModel model, CacheWriter writer)
    {
        var index = new Dictionary<TypeInfo, int>(ReferenceEqualityComparer.Instance);
        var all = new List<TypeInfo>(model.Types.Count);
        void Visit(TypeInfo? type)
        {
            if (type is not null && index.TryAdd(type, all.Count))
            {
                all.Add(type);
            }
        }
        foreach (TypeInfo type in model.Types)
        {
            Visit(type);
        }
        for (int i = 0; i < all.Count; i++)
        {
            Visit(all[i].Target);
            foreach (FieldInfo field in all[i].Fields)
            {
                Visit(field.Type);
            }
        }
        var strings = new Dictionary<string, int>(StringComparer.Ordinal);
        var table = new List<string>();
        int Name(string text)
        {
            if (!strings.TryGetValue(text, out int id))
            {
                id = table.Count;
                strings.Add(text, id);
                table.Add(text);
            }
            return id;
        }
        var records = new CacheWriter();
        var offsets = new int[all.Count];
        var record = records;
        for (int i = 0; i < all.Count; i++)
        {
            TypeInfo type = all[i];
            offsets[i] = records.Length;
            record.Int32(type.Id);
            record.Int32(Name(type.Name));
            record.Byte((byte)type.Kind);
            record.Int32(type.Size);
            record.Byte(type.IsSigned ? (byte)1 : (byte)0);
            record.Int32(type.Target is null ? -1 : index[type.Target]);
            record.Int32(type.ArrayLength);
            record.Int32(type.Fields.Count);
            foreach (FieldInfo field in type.Fields)
            {
                record.Int32(Name(field.Name));
                record.Int64(field.BitOffset);
                record.Int32(field.BitSize);
                record.Int32(index[field.Type]);
            }
            record.Int32(type.EnumValues.Count);
            foreach ((string name, long value) in type.EnumValues)
            {
                record.Int32(Name(name));
                record.Int64(value);
            }
        }
        // The lookups exactly as the model answers them (its own rules for duplicate names and typedef names).
        var names = all.Select(t => t.Name).Where(n => n.Length > 0).Distinct(StringComparer.Ordinal).ToList();
        var aggregates = new List<(string, int, int)>();
        var named = new List<(string, int, int)>();
        foreach (string name in names)
        {
            if (model.FindStruct(name) is { } aggregate)
            {
                aggregates.Add((name, Name(name), index[aggregate]));
            }
            if (model.FindType(name) is { } type)
            {
                named.Add((name, Name(name), index[type]));
            }
        }
        var symbols = model.Symbols.Select(kv => (kv.Key, Name(kv.Key), kv.Value)).ToList();

        writer.String(model.Source);
        writer.Int32(model.TypeCount);
        writer.Byte(model.KernelBanner is null ? (byte)0 : (byte)1);
        writer.String(model.KernelBanner ?? "");
        StringTable.Write(writer, table);
        writer.Int32(all.Count);
        writer.Int32(model.Types.Count);
        foreach (int offset in offsets)
        {
            writer.Int32(offset);
        }
        byte[] recordBytes = records.ToArray();
        writer.Int32(recordBytes.Length);
        writer.Bytes(recordBytes);
        NameIndex.Write(writer, aggregates);
        NameIndex.Write(writer, named);
        SymbolIndex.Write(writer, symbols);
    }

    /// <summary>Decodes a whole payload; false (never an exception) when it is not a complete, consistent model.</summary>
    public static bool TryDecode(CacheReader reader, out TypeModel? model, out string? problem, string? source = null)
    {
        try
        {
            model = Decode(reader, source);
            problem = reader.AtEnd ? null : "bytes after the model";
            return problem is null;
        }
        catch (InvalidDataException e)
        {
            model = null;
            problem = e.Message;
            return false;
        }
    }

    /// <summary>Reads one model's tables (not its types, which are decoded on first use); <paramref name="source"/>
    /// replaces the stored <see cref="TypeModel.Source"/> when given (it names where this run found the types).</summary>
    public static TypeModel Decode(CacheReader reader, string? source = null)
    {
        string storedSource = reader.String();
        int typeCount = reader.Int32();
        bool hasBanner = reader.Byte() != 0;
        string banner = reader.String();
        StringTable strings = StringTable.Read(reader);
        int total = reader.Count(FixedRecordBytes);
        int listed = reader.Int32();
        if (listed < 0 || listed > total)
        {
            throw new InvalidDataException($"{listed} listed types of {total}");
        }
        int offsetsAt = reader.Skip(4 * total);
        int recordsLength = reader.Count(1);
        int recordsAt = reader.Skip(recordsLength);
        var table = new LazyTypeTable(reader.Data, strings, total, offsetsAt, recordsAt, recordsLength);
        NameIndex aggregates = NameIndex.Read(reader, strings);
        NameIndex named = NameIndex.Read(reader, strings);
        SymbolIndex symbols = SymbolIndex.Read(reader, strings);
        return new TypeModel(source ?? storedSource, table, listed, typeCount, symbols, aggregates, named)
        {
            KernelBanner = hasBanner ? banner : null,
        };
    }
}

/// <summary>
/// The types of a cached model, each made from its record on first use: <see cref="Get"/> makes the type with its
/// fixed fields (name, kind, size), and the type's target, members and enumerators are decoded when first read.
/// Thread-safe (one lock per model around decoding; decoded types are read without it).
/// </summary>
internal sealed class LazyTypeTable(byte[] data, StringTable strings, int count, int offsetsAt, int recordsAt, int recordsLength)
{
    private static readonly TypeInfo s_missing = new(-1, "", TypeKind.Other);
    private readonly TypeInfo?[] _types = new TypeInfo?[count];
    private readonly Lock _gate = new();

    public int Count => _types.Length;

    /// <summary>Type <paramref name="index"/> (a placeholder of kind Other for an index the table does not have).</summary>
    public TypeInfo Get(int index)
    {
        if ((uint)index >= (uint)_types.Length)
        {
            return s_missing;
        }
        TypeInfo? known = Volatile.Read(ref _types[index]);
        if (known is not null)
        {
            return known;
        }
        lock (_gate)
        {
            if (_types[index] is { } raced)
            {
                return raced;
            }
            TypeInfo made;
            try
            {
                CacheReader record = Record(index);
                int id = record.Int32();
                string name = strings[record.Int32()];
                var kind = (TypeKind)record.Byte();
                made = new TypeInfo(id, name, Enum.IsDefined(kind) ? kind : TypeKind.Other) { Size = record.Int32(), IsSigned = record.Byte() != 0 };
                record.Int32();
                made.ArrayLength = record.Int32();
                made.AttachLazy(this, index);
            }
            catch (InvalidDataException)
            {
                made = new TypeInfo(-1, "", TypeKind.Other);
            }
            Volatile.Write(ref _types[index], made);
            return made;
        }
    }

    /// <summary>Decodes the target, members and enumerators of <paramref name="type"/> (type <paramref name="index"/>).</summary>
    internal void Fill(TypeInfo type, int index)
    {
        lock (_gate)
        {
            if (type.IsFilled)
            {
                return;
            }
            TypeInfo? target = null;
            FieldInfo[] fields = [];
            Dictionary<string, long>? enums = null;
            try
            {
                CacheReader record = Record(index);
                record.Skip(4 + 4 + 1 + 4 + 1);
                int targetIndex = record.Int32();
                record.Int32();
                target = targetIndex == -1 ? null : GetLocked(targetIndex);
                int fieldCount = record.Count(20);
                fields = new FieldInfo[fieldCount];
                for (int f = 0; f < fieldCount; f++)
                {
                    string name = strings[record.Int32()];
                    long bits = record.Int64();
                    int size = record.Int32();
                    fields[f] = new FieldInfo(name, bits, size, GetLocked(record.Int32()));
                }
                int enumCount = record.Count(12);
                if (enumCount > 0)
                {
                    enums = new Dictionary<string, long>(enumCount, StringComparer.Ordinal);
                    for (int e = 0; e < enumCount; e++)
                    {
                        enums.TryAdd(strings[record.Int32()], record.Int64());
                    }
                }
            }
            catch (InvalidDataException)
            {
                fields = [];
            }
            type.CompleteFill(target, fields, enums);
        }
    }

    // Get while holding the lock (Lock is re-entrant for its owner).
    private TypeInfo GetLocked(int index) => Get(index);

    private CacheReader Record(int index)
    {
        int offset = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(data.AsSpan(offsetsAt + 4 * index));
        if (offset < 0 || offset > recordsLength - TypeModelCodec.FixedRecordBytes)
        {
            throw new InvalidDataException($"type {index}: record offset {offset}");
        }
        return new CacheReader(data, recordsAt + offset, recordsAt + recordsLength);
    }
}

/// <summary>The first <paramref name="count"/> types of a <see cref="LazyTypeTable"/> as a list.</summary>
internal sealed class LazyTypeList(LazyTypeTable table, int count) : IReadOnlyList<TypeInfo>
{
    public TypeInfo this[int index] => (uint)index < (uint)count ? table.Get(index) : throw new ArgumentOutOfRangeException(nameof(index));

    public int Count => count;

    public IEnumerator<TypeInfo> GetEnumerator()
    {
        for (int i = 0; i < count; i++)
        {
            yield return table.Get(i);
        }
    }

    System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
}
