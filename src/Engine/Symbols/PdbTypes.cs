using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Symbols;

/// <summary>
/// Turns the records of a TPI stream into <see cref="TypeInfo"/>s: structs, classes and unions (forward references
/// resolved to the definition by unique name, then name), members and bitfields, pointers (size from the attributes),
/// arrays, enums, modifiers (folded away), procedures, and the simple types below 0x1000.
/// </summary>
/// <remarks>Struct shells (name, size) are made first and their field lists filled from a queue, so recursion only
/// follows pointer, array, modifier, bitfield and procedure chains, which are bounded by
/// <see cref="ParserLimits.MaxTypeDepth"/>.</remarks>
internal sealed partial class PdbTypeBuilder(MsfStream tpi, ParserLimits limits)
{
    private const int HeaderVersionOffset = 0;
    private const int HeaderSizeOffset = 4;
    private const int TypeIndexBeginOffset = 8;
    private const int TypeIndexEndOffset = 12;
    private const int TypeRecordBytesOffset = 16;
    private const int MinHeaderSize = 56;
    private const uint FirstTypeIndex = 0x1000;

    private readonly Dictionary<uint, TypeInfo> _made = [];
    private readonly Dictionary<string, uint> _byUniqueName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, uint> _byName = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TypeInfo> _forwards = new(StringComparer.Ordinal);
    private readonly Queue<(TypeInfo Type, uint FieldList, uint Index)> _fill = new();
    private readonly List<TypeInfo> _types = [];
    private readonly Dictionary<uint, IReadOnlyList<FieldInfo>> _fieldsByList = [];
    private uint _begin;
    private uint _end;
    private int[] _offsets = [];
    private long _walkBudget;

    /// <summary>Indexes every record, then makes every struct, union and enum definition and the types they reach.</summary>
    public void Build()
    {
        ReadHeader();
        var definitions = new List<uint>();
        for (uint index = _begin; index < _end; index++)
        {
            if (IsAggregateKind(Kind(index)) && (ReadAggregate(index).Property & Leaf.PropertyForwardReference) == 0)
            {
                definitions.Add(index);   // names are indexed before any forward reference is resolved
            }
        }
        foreach (uint index in definitions)
        {
            Get(index, 0);
        }
        Drain();
    }

    /// <summary>S_UDT records become typedefs (e.g. LIST_ENTRY for struct _LIST_ENTRY) unless they only repeat the name.</summary>
    public void AddTypedefs(List<(string Name, uint Type)> udts)
    {
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach ((string name, uint type) in udts)
        {
            if (name.Length == 0 || !seen.Add(name) || !IsKnown(type))
            {
                continue;
            }
            TypeInfo target = Get(type, 0);
            if (target.Name == name)
            {
                continue;
            }
            TypeInfo typedef = Add(new TypeInfo(_types.Count, name, TypeKind.Typedef));
            typedef.Target = target;
            typedef.Size = target.Size;
        }
        Drain();
    }

    public TypeModel ToModel(string source, IReadOnlyDictionary<string, ulong> symbols)
    {
        _types.AddRange(_forwards.Values);
        return new TypeModel(source, _types, (int)(_end - _begin), symbols);
    }

    private bool IsKnown(uint index) => index < FirstTypeIndex || (index >= _begin && index < _end);

    private void ReadHeader()
    {
        uint version = tpi.U32(HeaderVersionOffset, "TPI header.Version");
        uint headerSize = tpi.U32(HeaderSizeOffset, "TPI header.HeaderSize");
        _begin = tpi.U32(TypeIndexBeginOffset, "TPI header.TypeIndexBegin");
        _end = tpi.U32(TypeIndexEndOffset, "TPI header.TypeIndexEnd");
        uint recordBytes = tpi.U32(TypeRecordBytesOffset, "TPI header.TypeRecordBytes");
        if (headerSize < MinHeaderSize || headerSize > tpi.Length)
        {
            throw tpi.Fail("TPI header.HeaderSize", HeaderSizeOffset, $"header of {headerSize} bytes (version {version}) is not between {MinHeaderSize} and the stream's {tpi.Length} bytes");
        }
        if (_begin != FirstTypeIndex || _end < _begin)
        {
            throw tpi.Fail("TPI header.TypeIndexBegin", TypeIndexBeginOffset, $"type indices 0x{_begin:X}..0x{_end:X} do not start at 0x1000");
        }
        if (_end - _begin > (uint)limits.MaxTypes)
        {
            throw tpi.Fail("TPI header.TypeIndexEnd", TypeIndexEndOffset, $"{_end - _begin} types, more than the limit of {limits.MaxTypes}");
        }
        if (recordBytes > tpi.Length - headerSize)
        {
            throw tpi.Fail("TPI header.TypeRecordBytes", TypeRecordBytesOffset, $"{recordBytes} bytes of records do not fit after the header in the stream of {tpi.Length} bytes");
        }
        int count = (int)(_end - _begin);
        _offsets = new int[count];
        // Each field list is walked once (results are shared); a sub-record takes at least 4 bytes, so more member
        // visits than that means lists reached over and over through shared LF_INDEX continuations.
        _walkBudget = recordBytes / 4 + 1024;
        long position = headerSize;
        long end = headerSize + recordBytes;
        for (int i = 0; i < count; i++)
        {
            if (position + 4 > end)
            {
                throw tpi.Fail($"type 0x{_begin + i:X}", position, $"the records end after {i} of the {count} types the header declares");
            }
            ushort length = tpi.U16(position, $"type 0x{_begin + i:X}.RecordLength");
            if (length < 2 || position + 2 + length > end)
            {
                throw tpi.Fail($"type 0x{_begin + i:X}.RecordLength", position, $"record of {length} bytes runs past the end of the records at stream offset 0x{end:X}");
            }
            _offsets[i] = (int)position;
            position += 2 + length;
        }
    }

    private ushort Kind(uint index) => tpi.U16(_offsets[index - _begin] + 2, $"type 0x{index:X}.Kind");

    private int RecordStart(uint index) => _offsets[index - _begin] + 4;

    private int RecordEnd(uint index) => _offsets[index - _begin] + 2 + tpi.U16(_offsets[index - _begin], "RecordLength");

    private PdbFormatException Fail(uint index, string structure, long position, string problem)
        => tpi.Fail($"type 0x{index:X} ({Leaf.Name(Kind(index))}).{structure}", position, problem);

    private uint Reference(uint index, string structure, long position)
    {
        uint target = tpi.U32(position, $"type 0x{index:X}.{structure}");
        if (!IsKnown(target))
        {
            throw Fail(index, structure, position, $"type index 0x{target:X} is outside 0..0x{_end - 1:X}");
        }
        return target;
    }

    /// <summary>The type for <paramref name="index"/>, made on first use.</summary>
    private TypeInfo Get(uint index, int depth)
    {
        if (_made.TryGetValue(index, out TypeInfo? known))
        {
            return known;
        }
        if (depth >= limits.MaxTypeDepth)
        {
            throw tpi.Fail($"type 0x{index:X}", index >= _begin && index < _end ? _offsets[index - _begin] : 0,
                $"type references nested deeper than the limit of {limits.MaxTypeDepth} (a cycle?)");
        }
        if (index < FirstTypeIndex)
        {
            return Remember(index, Simple(index));
        }
        if (!IsKnown(index))
        {
            throw tpi.Fail($"type 0x{index:X}", -1, $"type index 0x{index:X} is outside 0..0x{_end - 1:X}");
        }
        ushort kind = Kind(index);
        int p = RecordStart(index);
        int end = RecordEnd(index);
        switch (kind)
        {
            case Leaf.Modifier:
                return Get(Reference(index, "ModifiedType", p), depth + 1);   // const/volatile/unaligned are folded away
            case Leaf.Bitfield:
                return Get(Reference(index, "Type", p), depth + 1);           // only meaningful as a member (see Fields)
            case Leaf.Pointer:
            {
                uint attributes = tpi.U32(p + 4, $"type 0x{index:X}.Attributes");
                var pointer = Remember(index, Add(new TypeInfo((int)index, "", TypeKind.Pointer)));
                pointer.Size = PointerSize(attributes);
                pointer.Target = Get(Reference(index, "ReferentType", p), depth + 1);
                return pointer;
            }
            case Leaf.Array:
            {
                var array = Remember(index, Add(new TypeInfo((int)index, "", TypeKind.Array)));
                uint elementIndex = Reference(index, "ElementType", p);
                Reference(index, "IndexType", p + 4);
                long bytes = Number(index, "Size", p + 8, end, out _);
                if (bytes < 0 || bytes > int.MaxValue)
                {
                    throw Fail(index, "Size", p + 8, $"array of {bytes} bytes");
                }
                TypeInfo element = Get(elementIndex, depth + 1);
                array.Target = element;
                array.Size = (int)bytes;
                array.ArrayLength = element.Size > 0 ? (int)(bytes / element.Size) : 0;
                return array;
            }
            case Leaf.Procedure or Leaf.MemberFunction:
            {
                var function = Remember(index, Add(new TypeInfo((int)index, "", TypeKind.Function)));
                function.Target = Get(Reference(index, "ReturnType", p), depth + 1);
                return function;
            }
            case Leaf.Class or Leaf.Structure or Leaf.Interface or Leaf.Union or Leaf.Enum:
                return MakeAggregate(index, kind, depth);
            default:
                // Argument lists, field lists, method lists, vtable shapes...: not data types.
                return Remember(index, Add(new TypeInfo((int)index, "", TypeKind.Other)));
        }
    }

    private TypeInfo Remember(uint index, TypeInfo type)
    {
        _made[index] = type;
        return type;
    }

    private TypeInfo Add(TypeInfo type)
    {
        _types.Add(type);
        return type;
    }

    /// <summary>The header fields shared by class, structure, interface, union and enum records.</summary>
    private readonly record struct Aggregate(ushort Property, uint FieldList, uint Underlying, long Size, string Name, string UniqueName);

    private Aggregate ReadAggregate(uint index)
    {
        ushort kind = Kind(index);
        int p = RecordStart(index);
        int end = RecordEnd(index);
        ushort property = tpi.U16(p + 2, $"type 0x{index:X}.Property");
        bool forward = (property & Leaf.PropertyForwardReference) != 0;
        uint fieldList = tpi.U32(p + 4, $"type 0x{index:X}.FieldList");
        uint underlying = 0;
        long size = 0;
        long name;
        switch (kind)
        {
            case Leaf.Union:
                size = Number(index, "Size", p + 8, end, out name);
                break;
            case Leaf.Enum:
                underlying = fieldList;
                fieldList = tpi.U32(p + 8, $"type 0x{index:X}.FieldList");
                name = p + 12;
                break;
            default:   // class, structure, interface: then derivation list and vtable shape
                size = Number(index, "Size", p + 16, end, out name);
                break;
        }
        if (size < 0 || size > int.MaxValue)
        {
            throw Fail(index, "Size", p, $"size {size} is out of range");
        }
        string text = tpi.CString(name, end, $"type 0x{index:X}.Name", limits.MaxNameLength, out long next);
        string unique = (property & Leaf.PropertyHasUniqueName) != 0 && next < end
            ? tpi.CString(next, end, $"type 0x{index:X}.UniqueName", limits.MaxNameLength, out _)
            : "";
        if (!forward && !_byName.ContainsKey(text) && text.Length > 0)
        {
            _byName[text] = index;
        }
        if (!forward && unique.Length > 0)
        {
            _byUniqueName.TryAdd(unique, index);
        }
        return new Aggregate(property, forward ? 0 : fieldList, underlying, size, text, unique);
    }

    private TypeInfo MakeAggregate(uint index, ushort kind, int depth)
    {
        Aggregate header = ReadAggregate(index);
        if ((header.Property & Leaf.PropertyForwardReference) != 0)
        {
            uint definition = header.UniqueName.Length > 0 && _byUniqueName.TryGetValue(header.UniqueName, out uint byUnique) ? byUnique
                : _byName.TryGetValue(header.Name, out uint byName) ? byName
                : 0;
            if (definition != 0 && (Kind(definition) == kind || (IsStructLike(kind) && IsStructLike(Kind(definition)))))
            {
                return Remember(index, Get(definition, depth + 1));
            }
            if (!_forwards.TryGetValue(header.Name, out TypeInfo? forward))
            {
                forward = new TypeInfo((int)index, Anonymous(header.Name), TypeKind.Forward);
                _forwards[header.Name] = forward;
            }
            return Remember(index, forward);
        }
        if (kind == Leaf.Enum)
        {
            var type = Remember(index, Add(new TypeInfo((int)index, Anonymous(header.Name), TypeKind.Enum)));
            TypeInfo underlying = Get(Reference(index, "UnderlyingType", RecordStart(index) + 4), depth + 1);
            type.Size = underlying.Size;
            type.IsSigned = underlying.IsSigned;
            type.EnumValues = Enumerators(index, header.FieldList, type);
            return type;
        }
        var aggregate = Remember(index, Add(new TypeInfo((int)index, Anonymous(header.Name), kind == Leaf.Union ? TypeKind.Union : TypeKind.Struct)));
        aggregate.Size = (int)header.Size;
        if (header.FieldList != 0)
        {
            _fill.Enqueue((aggregate, header.FieldList, index));
        }
        return aggregate;
    }

    private static bool IsStructLike(ushort kind) => kind is Leaf.Class or Leaf.Structure or Leaf.Interface;

    private static bool IsAggregateKind(ushort kind) => IsStructLike(kind) || kind is Leaf.Union or Leaf.Enum;

    /// <summary>Names the compiler invents for anonymous types ("&lt;unnamed-tag&gt;", "S::&lt;unnamed-tag&gt;",
    /// "__unnamed", "&lt;anonymous-tag&gt;") become "".</summary>
    private static string Anonymous(string name)
        => name.Length == 0 || name == "__unnamed" || name.Contains("<unnamed-", StringComparison.Ordinal)
           || name.Contains("<anonymous-", StringComparison.Ordinal)
            ? ""
            : name;

    private void Drain()
    {
        while (_fill.TryDequeue(out (TypeInfo Type, uint FieldList, uint Index) work))
        {
            work.Type.Fields = Fields(work.Index, work.FieldList);
        }
    }
}
