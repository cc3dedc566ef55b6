using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Symbols;

/// <summary>The TPI field lists, enumerators, numeric leaves and simple types of <see cref="PdbTypeBuilder"/>.</summary>
internal sealed partial class PdbTypeBuilder
{
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
