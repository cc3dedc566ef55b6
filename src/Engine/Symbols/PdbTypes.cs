using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Symbols;

/// <summary>CodeView type record kinds (leaves) read from the TPI stream.</summary>
internal static class Leaf
{
    public const ushort Modifier = 0x1001;
    public const ushort Pointer = 0x1002;
    public const ushort Procedure = 0x1008;
    public const ushort MemberFunction = 0x1009;
    public const ushort ArgList = 0x1201;
    public const ushort FieldList = 0x1203;
    public const ushort Bitfield = 0x1205;
    public const ushort MethodList = 0x1206;
    public const ushort BaseClass = 0x1400;
    public const ushort VirtualBaseClass = 0x1401;
    public const ushort IndirectVirtualBaseClass = 0x1402;
    public const ushort Index = 0x1404;
    public const ushort VirtualFunctionTablePointer = 0x1409;
    public const ushort Enumerate = 0x1502;
    public const ushort Array = 0x1503;
    public const ushort Class = 0x1504;
    public const ushort Structure = 0x1505;
    public const ushort Union = 0x1506;
    public const ushort Enum = 0x1507;
    public const ushort Member = 0x150D;
    public const ushort StaticMember = 0x150E;
    public const ushort Method = 0x150F;
    public const ushort NestedType = 0x1510;
    public const ushort OneMethod = 0x1511;
    public const ushort Interface = 0x1519;

    // numeric leaves: a value below 0x8000 is the number itself
    public const ushort Numeric = 0x8000;
    public const ushort Char = 0x8000;
    public const ushort Short = 0x8001;
    public const ushort UShort = 0x8002;
    public const ushort Long = 0x8003;
    public const ushort ULong = 0x8004;
    public const ushort QuadWord = 0x8009;
    public const ushort UQuadWord = 0x800A;

    // property bits of class, structure, union and enum records
    public const ushort PropertyForwardReference = 0x0080;
    public const ushort PropertyHasUniqueName = 0x0200;

    public static string Name(ushort kind) => kind switch
    {
        Modifier => "LF_MODIFIER",
        Pointer => "LF_POINTER",
        Procedure => "LF_PROCEDURE",
        MemberFunction => "LF_MFUNCTION",
        ArgList => "LF_ARGLIST",
        FieldList => "LF_FIELDLIST",
        Bitfield => "LF_BITFIELD",
        Array => "LF_ARRAY",
        Class => "LF_CLASS",
        Structure => "LF_STRUCTURE",
        Union => "LF_UNION",
        Enum => "LF_ENUM",
        Interface => "LF_INTERFACE",
        _ => $"leaf 0x{kind:X4}",
    };
}

/// <summary>
/// Turns the records of a TPI stream into <see cref="TypeInfo"/>s: structs, classes and unions (forward references
/// resolved to the definition by unique name, then name), members and bitfields, pointers (size from the attributes),
/// arrays, enums, modifiers (folded away), procedures, and the simple types below 0x1000.
/// </summary>
/// <remarks>Struct shells (name, size) are made first and their field lists filled from a queue, so recursion only
/// follows pointer, array, modifier, bitfield and procedure chains, which are bounded by
/// <see cref="ParserLimits.MaxTypeDepth"/>.</remarks>
internal sealed class PdbTypeBuilder(MsfStream tpi, ParserLimits limits)
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

    /// <summary>Walks a field list and its LF_INDEX continuations, calling <paramref name="visit"/> for each
    /// sub-record with its kind, start and the list's end.</summary>
    private void WalkFieldList(uint owner, uint fieldList, Func<ushort, long, long, uint, long> visit)
    {
        var visited = new HashSet<uint>();
        int members = 0;
        uint list = fieldList;
        while (list != 0)
        {
            if (!IsKnown(list) || list < FirstTypeIndex)
            {
                throw Fail(owner, "FieldList", RecordStart(owner), $"field list 0x{list:X} is not a type record");
            }
            if (Kind(list) != Leaf.FieldList)
            {
                throw Fail(owner, "FieldList", RecordStart(owner), $"type 0x{list:X} is a {Leaf.Name(Kind(list))}, not an LF_FIELDLIST");
            }
            if (!visited.Add(list))
            {
                throw Fail(list, "continuation", RecordStart(list), "the field list continues into itself (LF_INDEX cycle)");
            }
            uint next = 0;
            long position = RecordStart(list);
            long end = RecordEnd(list);
            while (position < end)
            {
                byte pad = tpi.U8(position, $"type 0x{list:X}.padding");
                if (pad >= 0xF0)
                {
                    position += Math.Max(1, pad & 0x0F);   // LF_PAD1..LF_PAD15: skip to the next sub-record
                    continue;
                }
                if (end - position < 2)
                {
                    break;
                }
                ushort kind = tpi.U16(position, $"type 0x{list:X}.member kind");
                if (kind == Leaf.Index)
                {
                    next = Reference(list, "LF_INDEX.Type", position + 4);
                    position += 8;
                    continue;
                }
                if (++members > limits.MaxTypeMembers)
                {
                    throw Fail(list, "members", position, $"more than the limit of {limits.MaxTypeMembers} members");
                }
                if (--_walkBudget < 0)
                {
                    throw Fail(list, "members", position, "field lists are reached more often than their size allows (shared LF_INDEX continuations)");
                }
                position = visit(kind, position, end, list);
            }
            list = next;
        }
    }

    private IReadOnlyList<FieldInfo> Fields(uint owner, uint fieldList)
    {
        if (_fieldsByList.TryGetValue(fieldList, out IReadOnlyList<FieldInfo>? shared))
        {
            return shared;   // several records with one field list (FieldInfo is immutable)
        }
        var fields = new List<FieldInfo>();
        WalkFieldList(owner, fieldList, (kind, position, end, list) =>
        {
            long p = position + 2;
            switch (kind)
            {
                case Leaf.Member:
                {
                    uint typeIndex = Reference(list, "LF_MEMBER.Type", p + 2);
                    long offset = Number(list, "LF_MEMBER.Offset", p + 6, end, out long name);
                    string text = tpi.CString(name, end, $"type 0x{list:X}.LF_MEMBER.Name", limits.MaxNameLength, out long next);
                    if (offset < 0 || offset > int.MaxValue)
                    {
                        throw Fail(list, "LF_MEMBER.Offset", p + 6, $"offset {offset} is out of range");
                    }
                    long bits = offset * 8;
                    int width = 0;
                    if (typeIndex >= FirstTypeIndex && Kind(typeIndex) == Leaf.Bitfield)
                    {
                        int b = RecordStart(typeIndex);
                        width = tpi.U8(b + 4, $"type 0x{typeIndex:X}.Length");
                        bits += tpi.U8(b + 5, $"type 0x{typeIndex:X}.Position");
                    }
                    fields.Add(new FieldInfo(text, bits, width, Get(typeIndex, 0)));
                    return next;
                }
                case Leaf.BaseClass:
                {
                    uint typeIndex = Reference(list, "LF_BCLASS.Type", p + 2);
                    long offset = Number(list, "LF_BCLASS.Offset", p + 6, end, out long next);
                    if (offset < 0 || offset > int.MaxValue)
                    {
                        throw Fail(list, "LF_BCLASS.Offset", p + 6, $"offset {offset} is out of range");
                    }
                    fields.Add(new FieldInfo("", offset * 8, 0, Get(typeIndex, 0)));   // base members are found like anonymous ones
                    return next;
                }
                default:
                    return SkipMember(list, kind, position, end);
            }
        });
        // Declaration order is offset order; keep it stable for union members and bitfields.
        IReadOnlyList<FieldInfo> sorted = [.. fields.OrderBy(f => f.BitOffset)];
        _fieldsByList[fieldList] = sorted;
        return sorted;
    }

    private IReadOnlyDictionary<string, long> Enumerators(uint owner, uint fieldList, TypeInfo type)
    {
        var values = new Dictionary<string, long>(StringComparer.Ordinal);
        if (fieldList == 0)
        {
            return values;
        }
        WalkFieldList(owner, fieldList, (kind, position, end, list) =>
        {
            if (kind != Leaf.Enumerate)
            {
                return SkipMember(list, kind, position, end);
            }
            long value = Number(list, "LF_ENUMERATE.Value", position + 4, end, out long name);
            string text = tpi.CString(name, end, $"type 0x{list:X}.LF_ENUMERATE.Name", limits.MaxNameLength, out long next);
            if (type.IsSigned && type.Size is > 0 and < 8)
            {
                int shift = 64 - type.Size * 8;
                value = (value << shift) >> shift;   // the compiler writes negative values of int enums as LF_ULONG
            }
            values.TryAdd(text, value);
            return next;
        });
        return values;
    }

    /// <summary>Steps over a field list sub-record this model does not keep; unknown kinds end the load (their
    /// length is unknown).</summary>
    private long SkipMember(uint list, ushort kind, long position, long end)
    {
        long p = position + 2;
        string where = $"type 0x{list:X}.member";
        long next;
        switch (kind)
        {
            case Leaf.Enumerate:
                Number(list, "LF_ENUMERATE.Value", p + 2, end, out next);
                tpi.CString(next, end, where, limits.MaxNameLength, out next);
                return next;
            case Leaf.StaticMember:
                tpi.CString(p + 6, end, where, limits.MaxNameLength, out next);
                return next;
            case Leaf.NestedType:
                tpi.CString(p + 6, end, where, limits.MaxNameLength, out next);
                return next;
            case Leaf.Method:
                tpi.CString(p + 6, end, where, limits.MaxNameLength, out next);
                return next;
            case Leaf.OneMethod:
            {
                ushort attributes = tpi.U16(p, where + ".Attributes");
                int methodKind = (attributes >> 2) & 7;
                long name = p + 6 + (methodKind is 4 or 6 ? 4 : 0);   // introducing virtual methods carry a vtable offset
                tpi.CString(name, end, where, limits.MaxNameLength, out next);
                return next;
            }
            case Leaf.BaseClass:
                Number(list, "LF_BCLASS.Offset", p + 6, end, out next);
                return next;
            case Leaf.VirtualBaseClass or Leaf.IndirectVirtualBaseClass:
                Number(list, "LF_VBCLASS.VBPointerOffset", p + 10, end, out next);
                Number(list, "LF_VBCLASS.VBTableIndex", next, end, out next);
                return next;
            case Leaf.VirtualFunctionTablePointer:
                return p + 6;
            case Leaf.Member:
                Number(list, "LF_MEMBER.Offset", p + 6, end, out next);
                tpi.CString(next, end, where, limits.MaxNameLength, out next);
                return next;
            default:
                throw tpi.Fail($"type 0x{list:X} (LF_FIELDLIST).member", position, $"unknown member record kind 0x{kind:X4}");
        }
    }

    /// <summary>A numeric leaf: the value itself below 0x8000, otherwise a kind followed by the value.</summary>
    private long Number(uint index, string structure, long position, long end, out long next)
    {
        if (position + 2 > end)
        {
            throw Fail(index, structure, Math.Min(position, end), "the number runs past the end of its record");
        }
        ushort leaf = tpi.U16(position, $"type 0x{index:X}.{structure}");
        if (leaf < Leaf.Numeric)
        {
            next = position + 2;
            return leaf;
        }
        int size = leaf switch
        {
            Leaf.Char => 1,
            Leaf.Short or Leaf.UShort => 2,
            Leaf.Long or Leaf.ULong => 4,
            Leaf.QuadWord or Leaf.UQuadWord => 8,
            _ => throw Fail(index, structure, position, $"numeric leaf 0x{leaf:X4} is not an integer this reader knows"),
        };
        next = position + 2 + size;
        if (next > end)
        {
            throw Fail(index, structure, position, "the number runs past the end of its record");
        }
        ReadOnlySpan<byte> bytes = tpi.Bytes(position + 2, size, $"type 0x{index:X}.{structure}");
        return leaf switch
        {
            Leaf.Char => (sbyte)bytes[0],
            Leaf.Short => System.Buffers.Binary.BinaryPrimitives.ReadInt16LittleEndian(bytes),
            Leaf.UShort => System.Buffers.Binary.BinaryPrimitives.ReadUInt16LittleEndian(bytes),
            Leaf.Long => System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(bytes),
            Leaf.ULong => System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(bytes),
            _ => System.Buffers.Binary.BinaryPrimitives.ReadInt64LittleEndian(bytes),   // LF_UQUADWORD above 2^63 wraps
        };
    }

    /// <summary>Pointer size from LF_POINTER attributes: bits 13-18 when set, else from the pointer kind (bits 0-4).</summary>
    private static int PointerSize(uint attributes)
    {
        int size = (int)((attributes >> 13) & 0x3F);
        if (size != 0)
        {
            return size;
        }
        return (attributes & 0x1F) switch
        {
            0x00 => 2,          // near 16
            0x01 or 0x02 or 0x03 or 0x04 or 0x05 or 0x06 or 0x07 or 0x08 or 0x09 or 0x0A => 4,   // far/huge/based, near 32
            0x0B => 6,          // far 16:32
            _ => 8,             // 64-bit
        };
    }

    private TypeInfo Simple(uint index)
    {
        uint mode = (index >> 8) & 0xF;
        uint basic = index & 0xFF;
        TypeInfo baseType = _made.TryGetValue(basic, out TypeInfo? known) ? known : Remember(basic, Add(BasicType(basic)));
        if (mode == 0)
        {
            return baseType;
        }
        var pointer = Add(new TypeInfo((int)index, "", TypeKind.Pointer));
        pointer.Size = mode switch
        {
            1 => 2,
            2 or 3 or 4 => 4,
            5 => 6,
            7 => 16,
            _ => 8,
        };
        pointer.Target = baseType;
        return pointer;
    }

    /// <summary>The basic types of the low byte of a simple type index (T_INT4, T_UQUAD, T_REAL64, T_WCHAR...).</summary>
    private static TypeInfo BasicType(uint basic)
    {
        (string name, TypeKind kind, int size, bool signed) = basic switch
        {
            0x00 => ("<no type>", TypeKind.Void, 0, false),
            0x03 => ("void", TypeKind.Void, 0, false),
            0x08 => ("HRESULT", TypeKind.Int, 4, true),
            0x10 => ("signed char", TypeKind.Int, 1, true),
            0x20 => ("unsigned char", TypeKind.Int, 1, false),
            0x70 => ("char", TypeKind.Int, 1, true),
            0x71 => ("wchar_t", TypeKind.Int, 2, false),
            0x7A => ("char16_t", TypeKind.Int, 2, false),
            0x7B => ("char32_t", TypeKind.Int, 4, false),
            0x7C => ("char8_t", TypeKind.Int, 1, false),
            0x68 => ("__int8", TypeKind.Int, 1, true),
            0x69 => ("unsigned __int8", TypeKind.Int, 1, false),
            0x11 => ("short", TypeKind.Int, 2, true),
            0x21 => ("unsigned short", TypeKind.Int, 2, false),
            0x72 => ("__int16", TypeKind.Int, 2, true),
            0x73 => ("unsigned __int16", TypeKind.Int, 2, false),
            0x12 => ("long", TypeKind.Int, 4, true),
            0x22 => ("unsigned long", TypeKind.Int, 4, false),
            0x74 => ("int", TypeKind.Int, 4, true),
            0x75 => ("unsigned int", TypeKind.Int, 4, false),
            0x13 => ("long long", TypeKind.Int, 8, true),
            0x23 => ("unsigned long long", TypeKind.Int, 8, false),
            0x76 => ("__int64", TypeKind.Int, 8, true),
            0x77 => ("unsigned __int64", TypeKind.Int, 8, false),
            0x14 => ("__int128", TypeKind.Int, 16, true),
            0x24 => ("unsigned __int128", TypeKind.Int, 16, false),
            0x78 => ("__int128", TypeKind.Int, 16, true),
            0x79 => ("unsigned __int128", TypeKind.Int, 16, false),
            0x30 => ("bool", TypeKind.Int, 1, false),
            0x31 => ("__bool16", TypeKind.Int, 2, false),
            0x32 => ("__bool32", TypeKind.Int, 4, false),
            0x33 => ("__bool64", TypeKind.Int, 8, false),
            0x40 => ("float", TypeKind.Float, 4, true),
            0x41 => ("double", TypeKind.Float, 8, true),
            0x42 => ("long double", TypeKind.Float, 10, true),
            0x43 => ("__float128", TypeKind.Float, 16, true),
            0x44 => ("__float48", TypeKind.Float, 6, true),
            0x46 => ("__float16", TypeKind.Float, 2, true),
            _ => ($"simple type 0x{basic:X2}", TypeKind.Other, 0, false),
        };
        return new TypeInfo((int)basic, name, kind) { Size = size, IsSigned = signed };
    }
}
