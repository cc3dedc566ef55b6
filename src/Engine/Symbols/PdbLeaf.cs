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
