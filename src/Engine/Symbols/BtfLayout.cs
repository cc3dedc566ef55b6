namespace CloudMem.Engine.Symbols;

/// <summary>
/// On-disk layout of the BPF Type Format (Linux Documentation/bpf/btf.rst, include/uapi/linux/btf.h), little-endian.
/// A blob is a header, then a type section and a string section at offsets relative to the end of the header.
/// </summary>
internal static class BtfLayout
{
    public const ushort Magic = 0xEB9F;
    public const byte SupportedVersion = 1;

    // struct btf_header
    public const int MagicOffset = 0x00;      // u16
    public const int VersionOffset = 0x02;    // u8
    public const int FlagsOffset = 0x03;      // u8
    public const int HdrLenOffset = 0x04;     // u32
    public const int TypeOffOffset = 0x08;    // u32, relative to the end of the header
    public const int TypeLenOffset = 0x0C;    // u32
    public const int StrOffOffset = 0x10;     // u32
    public const int StrLenOffset = 0x14;     // u32
    public const int MinHeaderSize = 0x18;    // kernels up to 6.x
    public const int LayoutOffOffset = 0x18;  // u32, newer 32-byte header: per-kind record sizes
    public const int LayoutLenOffset = 0x1C;  // u32
    public const int LayoutHeaderSize = 0x20;
    public const int MaxHeaderSize = 0x100;

    // struct btf_type: name_off, info (vlen 0-15, kind 24-28, kind_flag 31), size or type
    public const int TypeNameOff = 0x0;
    public const int TypeInfoOffset = 0x4;
    public const int TypeSizeOrType = 0x8;
    public const int TypeRecordSize = 0xC;

    // struct btf_layout (one per kind in the layout section)
    public const int LayoutEntrySize = 4;     // u8 info_sz, u8 elem_sz, u16 flags

    public const int KindInt = 1, KindPtr = 2, KindArray = 3, KindStruct = 4, KindUnion = 5, KindEnum = 6, KindFwd = 7,
        KindTypedef = 8, KindVolatile = 9, KindConst = 10, KindRestrict = 11, KindFunc = 12, KindFuncProto = 13,
        KindVar = 14, KindDatasec = 15, KindFloat = 16, KindDeclTag = 17, KindTypeTag = 18, KindEnum64 = 19;

    public static int Kind(uint info) => (int)((info >> 24) & 0x1F);
    public static int Vlen(uint info) => (int)(info & 0xFFFF);
    public static bool KindFlag(uint info) => (info >> 31) != 0;

    // Extra data after btf_type, and the size of each of the vlen entries that follow, by kind (-1: unknown kind).
    public static int ExtraSize(int kind) => kind switch
    {
        KindInt => 4,            // u32: encoding 24-27, offset 16-23, bits 0-7
        KindArray => 12,         // btf_array: type, index_type, nelems
        KindVar => 4,            // btf_var: linkage
        KindDeclTag => 4,        // btf_decl_tag: s32 component_idx
        KindPtr or KindFwd or KindTypedef or KindVolatile or KindConst or KindRestrict or KindFunc or KindFloat
            or KindTypeTag or KindStruct or KindUnion or KindEnum or KindEnum64 or KindFuncProto or KindDatasec => 0,
        _ => -1,
    };

    public static int EntrySize(int kind) => kind switch
    {
        KindStruct or KindUnion => 12,  // btf_member: name_off, type, offset (bits; with kind_flag: size << 24 | offset)
        KindEnum => 8,                  // btf_enum: name_off, s32/u32 val
        KindEnum64 => 12,               // btf_enum64: name_off, val_lo32, val_hi32
        KindFuncProto => 8,             // btf_param: name_off, type
        KindDatasec => 12,              // btf_var_secinfo: type, offset, size
        _ => 0,
    };

    // BTF_KIND_INT encoding bits
    public const int IntSigned = 1;

    public static string KindName(int kind) => kind switch
    {
        KindInt => "INT", KindPtr => "PTR", KindArray => "ARRAY", KindStruct => "STRUCT", KindUnion => "UNION",
        KindEnum => "ENUM", KindFwd => "FWD", KindTypedef => "TYPEDEF", KindVolatile => "VOLATILE", KindConst => "CONST",
        KindRestrict => "RESTRICT", KindFunc => "FUNC", KindFuncProto => "FUNC_PROTO", KindVar => "VAR",
        KindDatasec => "DATASEC", KindFloat => "FLOAT", KindDeclTag => "DECL_TAG", KindTypeTag => "TYPE_TAG",
        KindEnum64 => "ENUM64", _ => $"kind {kind}",
    };
}
