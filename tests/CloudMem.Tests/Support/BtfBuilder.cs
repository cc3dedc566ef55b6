using System.Buffers.Binary;
using System.Text;

namespace CloudMem.Tests.Support;

/// <summary>
/// Writes small BTF blobs for tests, record by record (kinds and layouts from the kernel's btf.rst). Type ids are
/// given out from 1 in the order records are added.
/// </summary>
public sealed class BtfBuilder
{
    public const int Int = 1, Ptr = 2, Array = 3, Struct = 4, Union = 5, Enum = 6, Fwd = 7, Typedef = 8, Volatile = 9,
        Const = 10, Restrict = 11, Func = 12, FuncProto = 13, Var = 14, Datasec = 15, Float = 16, DeclTag = 17,
        TypeTag = 18, Enum64 = 19;

    private readonly MemoryStream _types = new();
    private readonly MemoryStream _strings = new();
    private readonly Dictionary<string, uint> _offsets = new(StringComparer.Ordinal);

    public BtfBuilder() => _strings.WriteByte(0);

    /// <summary>Number of type records so far (the last id given out).</summary>
    public int Count { get; private set; }

    /// <summary>Extra bytes after the standard 24-byte header fields (a 32-byte header has 8).</summary>
    public byte[]? LayoutSection { get; set; }

    public uint Str(string text)
    {
        if (text.Length == 0)
        {
            return 0;
        }
        if (!_offsets.TryGetValue(text, out uint offset))
        {
            offset = (uint)_strings.Length;
            _strings.Write(Encoding.UTF8.GetBytes(text));
            _strings.WriteByte(0);
            _offsets[text] = offset;
        }
        return offset;
    }

    public static uint Info(int kind, int vlen = 0, bool kindFlag = false)
        => (uint)vlen | ((uint)kind << 24) | (kindFlag ? 1u << 31 : 0);

    /// <summary>Appends a raw record: btf_type then the given u32 words; returns its id.</summary>
    public int Raw(uint nameOff, uint info, uint sizeOrType, params uint[] words)
    {
        U32(nameOff);
        U32(info);
        U32(sizeOrType);
        foreach (uint word in words)
        {
            U32(word);
        }
        return ++Count;
    }

    public int AddInt(string name, int size, bool signed, int bits = -1, int bitOffset = 0)
        => Raw(Str(name), Info(Int), (uint)size, ((signed ? 1u : 0u) << 24) | ((uint)bitOffset << 16) | (uint)(bits < 0 ? size * 8 : bits));

    public int AddRef(int kind, string name, int type) => Raw(Str(name), Info(kind), (uint)type);

    public int AddArray(int element, int index, int count) => Raw(0, Info(Array), 0, (uint)element, (uint)index, (uint)count);

    /// <summary>A struct or union; members as (name, type id, bit offset, bitfield size) with kind_flag set when
    /// any member is a bitfield.</summary>
    public int AddStruct(string name, int size, params (string Name, int Type, int BitOffset, int BitSize)[] members)
        => AddAggregate(Struct, name, size, members);

    public int AddUnion(string name, int size, params (string Name, int Type, int BitOffset, int BitSize)[] members)
        => AddAggregate(Union, name, size, members);

    private int AddAggregate(int kind, string name, int size, (string Name, int Type, int BitOffset, int BitSize)[] members)
    {
        bool kindFlag = members.Any(m => m.BitSize != 0);
        var words = new List<uint>();
        foreach ((string memberName, int type, int bitOffset, int bitSize) in members)
        {
            words.Add(Str(memberName));
            words.Add((uint)type);
            words.Add(kindFlag ? ((uint)bitSize << 24) | (uint)bitOffset : (uint)bitOffset);
        }
        return Raw(Str(name), Info(kind, members.Length, kindFlag), (uint)size, [.. words]);
    }

    public int AddEnum(string name, int size, bool signed, params (string Name, int Value)[] values)
        => Raw(Str(name), Info(Enum, values.Length, signed), (uint)size, [.. values.SelectMany(v => new[] { Str(v.Name), unchecked((uint)v.Value) })]);

    public int AddEnum64(string name, bool signed, params (string Name, long Value)[] values)
        => Raw(Str(name), Info(Enum64, values.Length, signed), 8,
            [.. values.SelectMany(v => new[] { Str(v.Name), unchecked((uint)v.Value), unchecked((uint)((ulong)v.Value >> 32)) })]);

    public int AddFuncProto(int returnType, params (string Name, int Type)[] parameters)
        => Raw(0, Info(FuncProto, parameters.Length), (uint)returnType, [.. parameters.SelectMany(p => new[] { Str(p.Name), (uint)p.Type })]);

    private void U32(uint value)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(b, value);
        _types.Write(b);
    }

    /// <summary>The blob: header (24 bytes, or 32 with a layout section), types, layout, strings.</summary>
    public byte[] Build()
    {
        byte[] types = _types.ToArray();
        byte[] strings = _strings.ToArray();
        byte[] layout = LayoutSection ?? [];
        int headerLength = LayoutSection is null ? 24 : 32;
        var blob = new byte[headerLength + types.Length + layout.Length + strings.Length];
        BinaryPrimitives.WriteUInt16LittleEndian(blob, 0xEB9F);
        blob[2] = 1;
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(4), (uint)headerLength);
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(8), 0);
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(12), (uint)types.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(16), (uint)(types.Length + layout.Length));
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(20), (uint)strings.Length);
        if (LayoutSection is not null)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(24), (uint)types.Length);
            BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(28), (uint)layout.Length);
        }
        types.CopyTo(blob, headerLength);
        layout.CopyTo(blob, headerLength + types.Length);
        strings.CopyTo(blob, headerLength + types.Length + layout.Length);
        return blob;
    }
}
