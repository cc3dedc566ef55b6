namespace CloudMem.VmStateParsers.Formats.Avml;

/// <summary>
/// AVML version 2: per range, a 32-byte header like LiME's, a Snappy framed stream of the range's bytes,
/// and a u64 trailer with the framed stream's length.
/// </summary>
internal static class AvmlLayout
{
    public const uint Magic = 0x4C4D5641;        // "AVML" on disk
    public const uint Version = 2;
    public const int HeaderSize = 0x20;
    public const int MagicOffset = 0x00;         // u32
    public const int VersionOffset = 0x04;       // u32
    public const int StartOffset = 0x08;         // u64 first physical address
    public const int EndOffset = 0x10;           // u64 last physical address, inclusive
    public const int PaddingOffset = 0x18;       // u64 must be zero
    public const int TrailerSize = 8;            // u64 framed-stream length

    // Snappy framing (google/snappy framing_format.txt): 1-byte type, 3-byte little-endian length.
    public const int ChunkHeader = 4;
    public const int ChunkCrc = 4;
    public const byte ChunkCompressed = 0x00;
    public const byte ChunkUncompressed = 0x01;
    public const byte ChunkPadding = 0xFE;
    public const byte ChunkStreamIdentifier = 0xFF;
    public const int MaxChunkData = 65536;
}
