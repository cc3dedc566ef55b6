namespace CloudMem.VmStateParsers.Formats.Elf;

/// <summary>ELF header and program header field offsets (System V ABI), 64- and 32-bit.</summary>
internal static class ElfLayout
{
    public const uint Magic = 0x464C457F;       // 7F 'E' 'L' 'F'
    public const int IdentClass = 4;            // 1 = 32-bit, 2 = 64-bit
    public const int IdentData = 5;             // 1 = little-endian, 2 = big-endian
    public const int Type = 0x10;               // u16, 4 = ET_CORE
    public const int Machine = 0x12;            // u16
    public const ushort EtCore = 4;
    public const ushort PnXnum = 0xFFFF;
    public const uint PtLoad = 1;
    public const uint PtNote = 4;

    public static class H64
    {
        public const int Size = 0x40;
        public const int PhOff = 0x20;          // u64
        public const int ShOff = 0x28;          // u64
        public const int PhEntSize = 0x36;      // u16
        public const int PhNum = 0x38;          // u16
        public const int ShEntSize = 0x3A;      // u16
        public const int ShNum = 0x3C;          // u16
        public const int ShInfo = 0x2C;         // u32 in section header 0 (real phnum when PN_XNUM)
    }

    public static class H32
    {
        public const int Size = 0x34;
        public const int PhOff = 0x1C;          // u32
        public const int ShOff = 0x20;          // u32
        public const int PhEntSize = 0x2A;      // u16
        public const int PhNum = 0x2C;          // u16
        public const int ShEntSize = 0x2E;      // u16
        public const int ShNum = 0x30;          // u16
        public const int ShInfo = 0x1C;         // u32 in section header 0
    }

    public static class P64
    {
        public const int Size = 56;
        public const int Type = 0x00;           // u32
        public const int Flags = 0x04;          // u32
        public const int Offset = 0x08;         // u64
        public const int VAddr = 0x10;          // u64
        public const int PAddr = 0x18;          // u64
        public const int FileSz = 0x20;         // u64
        public const int MemSz = 0x28;          // u64
    }

    public static class P32
    {
        public const int Size = 32;
        public const int Type = 0x00;           // u32
        public const int Offset = 0x04;         // u32
        public const int VAddr = 0x08;          // u32
        public const int PAddr = 0x0C;          // u32
        public const int FileSz = 0x10;         // u32
        public const int MemSz = 0x14;          // u32
    }

    public static string MachineName(ushort machine) => machine switch
    {
        0x03 => "i386",
        0x08 => "mips",
        0x14 => "ppc",
        0x15 => "ppc64",
        0x16 => "s390",
        0x28 => "arm",
        0x3E => "x86_64",
        0xB7 => "aarch64",
        0xF3 => "riscv",
        _ => $"0x{machine:X}",
    };
}
