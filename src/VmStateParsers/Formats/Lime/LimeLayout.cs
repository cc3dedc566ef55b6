namespace CloudMem.VmStateParsers.Formats.Lime;

/// <summary>LiME range header (32 bytes, little-endian), one per System RAM range, data right after it.</summary>
internal static class LimeLayout
{
    public const uint Magic = 0x4C694D45;        // "EMiL" on disk
    public const uint Version = 1;
    public const int HeaderSize = 0x20;

    public const int MagicOffset = 0x00;         // u32
    public const int VersionOffset = 0x04;       // u32
    public const int StartOffset = 0x08;         // u64 first physical address
    public const int EndOffset = 0x10;           // u64 last physical address, inclusive
    public const int ReservedOffset = 0x18;      // u64
}
