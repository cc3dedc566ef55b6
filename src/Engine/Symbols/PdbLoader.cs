using System.Buffers.Binary;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Symbols;

/// <summary>Who a PDB is: the values its PE image's CodeView RSDS record must carry.</summary>
/// <param name="Guid">The GUID as 32 upper-case hex digits (the symbol-server spelling, as <see cref="PdbGuid.Format"/>).</param>
/// <param name="Age">The age from the PDB info stream.</param>
/// <param name="DbiAge">The age from the DBI stream (what the linker writes into the image), or null without a DBI stream.</param>
/// <param name="Signature">The PDB info stream's time stamp signature.</param>
/// <param name="Version">The PDB info stream version (20000404 for Visual C++ 7.0 and later).</param>
/// <param name="NamedStreams">The named stream map (e.g. "/names", "/LinkInfo") to stream numbers.</param>
public sealed record PdbIdentity(string Guid, uint Age, uint? DbiAge, uint Signature, uint Version, IReadOnlyDictionary<string, int> NamedStreams)
{
    /// <summary>True when the PDB is the one an image's RSDS record (GUID, age) asks for. The image carries the DBI age;
    /// the info stream's age is accepted too (they differ only in PDBs rewritten after linking).</summary>
    public bool Matches(string guid, uint age)
        => string.Equals(Guid, guid, StringComparison.OrdinalIgnoreCase) && (DbiAge == age || Age == age);
}

/// <summary>
/// Loads a Windows PDB (MSF 7.00) into a <see cref="TypeModel"/> usable exactly like one loaded from an ISF: types from
/// the TPI stream, public symbols (and global data symbols) from the DBI's symbol record stream as RVAs.
/// </summary>
/// <remarks>
/// <para>Read: the superblock and stream directory (the free block map is ignored), the PDB info stream (version,
/// signature, age, GUID, named stream map), the TPI stream, the DBI stream (header, optional debug header: section
/// headers and OMAP), and the symbol record stream (S_PUB32, S_GDATA32, S_UDT). Not read: module streams, the IPI
/// stream, hash streams.</para>
/// <para>Every count and offset read from the file is bounded (<see cref="ParserLimits"/>); problems raise a
/// <see cref="PdbFormatException"/> with the file name, structure and file offset.</para>
/// </remarks>
public static class PdbLoader
{
    private const int InfoStream = 1;
    private const int TpiStream = 2;
    private const int DbiStream = 3;
    private const uint InfoVersionVc70 = 20000404;

    /// <summary>True when <paramref name="head"/> (the first bytes of a file) is an MSF 7.00 PDB.</summary>
    public static bool IsPdb(ReadOnlySpan<byte> head) => MsfFile.IsMsf(head);

    /// <summary>Loads a PDB file.</summary>
    /// <exception cref="PdbFormatException">The file is not a readable PDB (message: file, structure, offset).</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static TypeModel Load(string path, ParserLimits? limits = null)
    {
        limits ??= ParserLimits.Default;
        string source = $"PDB {Path.GetFileName(path)}";
        return Load(ReadFile(path, source, limits), source, limits);
    }

    /// <summary>Loads a PDB from its bytes.</summary>
    /// <param name="pdb">The whole file; read during the call only.</param>
    /// <param name="source">Names the PDB in <see cref="TypeModel.Source"/> and messages, e.g. "PDB ntkrnlmp.pdb".</param>
    /// <param name="limits">Caps on counts read from the file.</param>
    public static TypeModel Load(ReadOnlyMemory<byte> pdb, string source, ParserLimits? limits = null)
    {
        limits ??= ParserLimits.Default;
        MsfFile msf = MsfFile.Open(pdb, source, limits);
        ReadIdentity(msf, limits);   // checks the info stream even though the model does not keep it
        var types = new PdbTypeBuilder(msf.ReadStream(TpiStream, "TPI stream"), limits);
        types.Build();
        var symbols = new Dictionary<string, ulong>(StringComparer.Ordinal);
        var udts = new List<(string Name, uint Type)>();
        if (msf.HasStream(DbiStream))
        {
            ReadDbiSymbols(msf, limits, symbols, udts);
        }
        types.AddTypedefs(udts);
        return types.ToModel(source, symbols);
    }

    /// <summary>Reads only the identity (GUID, ages, signature, named streams) of a PDB file.</summary>
    /// <exception cref="PdbFormatException">Not a readable PDB.</exception>
    public static PdbIdentity ReadIdentity(string path, ParserLimits? limits = null)
    {
        limits ??= ParserLimits.Default;
        string source = $"PDB {Path.GetFileName(path)}";
        return ReadIdentity(ReadFile(path, source, limits), source, limits);
    }

    /// <summary>Reads only the identity of a PDB held in memory.</summary>
    public static PdbIdentity ReadIdentity(ReadOnlyMemory<byte> pdb, string source, ParserLimits? limits = null)
    {
        limits ??= ParserLimits.Default;
        return ReadIdentity(MsfFile.Open(pdb, source, limits), limits);
    }

    private static byte[] ReadFile(string path, string source, ParserLimits limits)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        if (file.Length > limits.MaxPdbBytes)
        {
            throw new PdbFormatException(source, "file", 0, $"the file has {file.Length} bytes, more than the limit of {limits.MaxPdbBytes}");
        }
        byte[] bytes = new byte[file.Length];
        file.ReadExactly(bytes);
        return bytes;
    }

    private static PdbIdentity ReadIdentity(MsfFile msf, ParserLimits limits)
    {
        MsfStream info = msf.ReadStream(InfoStream, "PDB info stream");
        uint version = info.U32(0, "PDB info stream.Version");
        uint signature = info.U32(4, "PDB info stream.Signature");
        uint age = info.U32(8, "PDB info stream.Age");
        if (version < InfoVersionVc70)
        {
            throw info.Fail("PDB info stream.Version", 0, $"version {version} predates Visual C++ 7.0 (20000404) and has no GUID");
        }
        string guid = PdbGuid.Format(info.Bytes(12, 16, "PDB info stream.Guid"));
        IReadOnlyDictionary<string, int> named = ReadNamedStreams(info, 28, msf.StreamCount, limits);
        uint? dbiAge = null;
        if (msf.HasStream(DbiStream))
        {
            MsfStream dbi = msf.ReadStream(DbiStream, "DBI stream");
            dbiAge = dbi.U32(DbiLayout.AgeOffset, "DBI stream.Age");
        }
        return new PdbIdentity(guid, age, dbiAge, signature, version, named);
    }

    /// <summary>The named stream map: a string buffer, then a hash table of (string offset, stream number) with
    /// present and deleted bit vectors.</summary>
    private static Dictionary<string, int> ReadNamedStreams(MsfStream info, long position, int streamCount, ParserLimits limits)
    {
        const string Where = "PDB info stream.named stream map";
        uint stringBytes = info.U32(position, Where + ".StringBytes");
        long strings = position + 4;
        if (stringBytes > info.Length - strings)
        {
            throw info.Fail(Where + ".StringBytes", position, $"{stringBytes} bytes of names run past the end of the stream ({info.Length} bytes)");
        }
        position = strings + stringBytes;
        uint size = info.U32(position, Where + ".Size");
        uint capacity = info.U32(position + 4, Where + ".Capacity");
        if (size > capacity || capacity > limits.MaxPdbStreams)
        {
            throw info.Fail(Where + ".Capacity", position, $"{size} entries in a table of {capacity} buckets (limit {limits.MaxPdbStreams})");
        }
        position += 8;
        uint presentWords = info.U32(position, Where + ".Present.NumWords");
        if (presentWords > (info.Length - position) / 4)
        {
            throw info.Fail(Where + ".Present.NumWords", position, $"{presentWords} words run past the end of the stream");
        }
        long presentAt = position + 4;
        position = presentAt + presentWords * 4L;
        uint deletedWords = info.U32(position, Where + ".Deleted.NumWords");
        if (deletedWords > (info.Length - position) / 4)
        {
            throw info.Fail(Where + ".Deleted.NumWords", position, $"{deletedWords} words run past the end of the stream");
        }
        position += 4 + deletedWords * 4L;
        var named = new Dictionary<string, int>(StringComparer.Ordinal);
        long bucket = 0;
        for (uint w = 0; w < presentWords; w++)
        {
            uint word = info.U32(presentAt + w * 4L, Where + ".Present");
            for (int bit = 0; bit < 32; bit++, bucket++)
            {
                if ((word & (1u << bit)) == 0)
                {
                    continue;
                }
                if (bucket >= capacity || named.Count >= size)
                {
                    throw info.Fail(Where + ".Present", presentAt + w * 4L, $"bucket {bucket} is marked present but the table has {capacity} buckets and {size} entries");
                }
                uint key = info.U32(position, Where + $".bucket[{bucket}].Key");
                uint value = info.U32(position + 4, Where + $".bucket[{bucket}].Value");
                if (key >= stringBytes)
                {
                    throw info.Fail(Where + $".bucket[{bucket}].Key", position, $"name offset {key} is outside the {stringBytes} bytes of names");
                }
                if (value >= streamCount)
                {
                    throw info.Fail(Where + $".bucket[{bucket}].Value", position + 4, $"stream {value} is not in the directory ({streamCount} streams)");
                }
                string name = info.CString(strings + key, strings + stringBytes, Where + ".name", limits.MaxNameLength, out _);
                named.TryAdd(name, (int)value);
                position += 8;
            }
        }
        return named;
    }

    /// <summary>Public and global data symbols (as RVAs) and S_UDT typedef names from the DBI's symbol record stream.</summary>
    private static void ReadDbiSymbols(MsfFile msf, ParserLimits limits, Dictionary<string, ulong> symbols, List<(string, uint)> udts)
    {
        MsfStream dbi = msf.ReadStream(DbiStream, "DBI stream");
        int signature = dbi.I32(DbiLayout.VersionSignatureOffset, "DBI stream.VersionSignature");
        if (signature != -1)
        {
            throw dbi.Fail("DBI stream.VersionSignature", DbiLayout.VersionSignatureOffset, $"{signature} is not -1 (the new DBI format of Visual C++ 7.0 and later)");
        }
        ushort symRecords = dbi.U16(DbiLayout.SymRecordStreamOffset, "DBI stream.SymRecordStream");
        long position = DbiLayout.HeaderSize;
        int[] substreams = [DbiLayout.ModInfoSizeOffset, DbiLayout.SectionContributionSizeOffset, DbiLayout.SectionMapSizeOffset,
            DbiLayout.SourceInfoSizeOffset, DbiLayout.TypeServerMapSizeOffset, DbiLayout.ECSubstreamSizeOffset];
        foreach (int field in substreams)
        {
            int size = dbi.I32(field, "DBI stream substream size");
            if (size < 0 || size > dbi.Length - position)
            {
                throw dbi.Fail($"DBI stream substream size at header offset 0x{field:X}", field, $"{size} bytes do not fit in the rest of the stream ({dbi.Length - position} bytes)");
            }
            position += size;
        }
        int debugSize = dbi.I32(DbiLayout.OptionalDbgHeaderSizeOffset, "DBI stream.OptionalDbgHeaderSize");
        if (debugSize < 0 || debugSize > dbi.Length - position)
        {
            throw dbi.Fail("DBI stream.OptionalDbgHeaderSize", DbiLayout.OptionalDbgHeaderSizeOffset, $"{debugSize} bytes do not fit in the rest of the stream ({dbi.Length - position} bytes)");
        }
        int DebugStream(int slot) => slot * 2 + 2 <= debugSize ? dbi.U16(position + slot * 2, "DBI stream.optional debug header") : 0xFFFF;
        int sectionStream = DebugStream(DbiLayout.DebugSectionHeaders);
        int originalSections = DebugStream(DbiLayout.DebugOriginalSectionHeaders);
        int omapFromSource = DebugStream(DbiLayout.DebugOmapFromSource);
        if (symRecords == 0xFFFF || !msf.HasStream(symRecords))
        {
            return;
        }
        // With OMAP (images reordered after linking), symbols are addressed in the original layout and mapped.
        bool omap = omapFromSource != 0xFFFF && originalSections != 0xFFFF && msf.HasStream(omapFromSource) && msf.HasStream(originalSections);
        uint[] sections = ReadSections(msf, omap ? originalSections : sectionStream);
        uint[] omapTable = omap ? ReadOmap(msf.ReadStream(omapFromSource, "OMAP from source stream")) : [];
        MsfStream records = msf.ReadStream(symRecords, "symbol record stream");
        var found = new Dictionary<string, (ulong Rva, bool Public)>(StringComparer.Ordinal);
        position = 0;
        while (position + 4 <= records.Length)
        {
            ushort length = records.U16(position, "symbol record.RecordLength");
            ushort kind = records.U16(position + 2, "symbol record.RecordKind");
            long end = position + 2 + length;
            if (length < 2 || end > records.Length)
            {
                throw records.Fail("symbol record.RecordLength", position, $"record of {length} bytes runs past the end of the stream ({records.Length} bytes)");
            }
            switch (kind)
            {
                case SymbolKinds.Pub32 or SymbolKinds.GData32:
                    bool isPublic = kind == SymbolKinds.Pub32;
                    uint offset = records.U32(position + 8, isPublic ? "S_PUB32.Offset" : "S_GDATA32.Offset");
                    ushort segment = records.U16(position + 12, isPublic ? "S_PUB32.Segment" : "S_GDATA32.Segment");
                    string name = records.CString(position + 14, end, isPublic ? "S_PUB32.Name" : "S_GDATA32.Name", limits.MaxNameLength, out _);
                    if (segment < 1 || segment > sections.Length || ToRva(sections[segment - 1] + (ulong)offset, omapTable) is not ulong rva)
                    {
                        break;   // absolute symbols (segment 0) and code removed by OMAP have no RVA
                    }
                    // Public symbols win; global data (statics are not public) fills the gaps.
                    if (found.TryGetValue(name, out (ulong Rva, bool Public) known) ? isPublic && !known.Public : true)
                    {
                        if (!found.ContainsKey(name) && found.Count >= limits.MaxSymbols)
                        {
                            throw records.Fail("symbol record", position, $"more than the limit of {limits.MaxSymbols} symbols");
                        }
                        found[name] = (rva, isPublic);
                    }
                    break;
                case SymbolKinds.Udt:
                    uint type = records.U32(position + 4, "S_UDT.Type");
                    string udt = records.CString(position + 8, end, "S_UDT.Name", limits.MaxNameLength, out _);
                    if (udts.Count >= limits.MaxTypes)
                    {
                        throw records.Fail("S_UDT", position, $"more than the limit of {limits.MaxTypes} typedefs");
                    }
                    udts.Add((udt, type));
                    break;
            }
            position = end;
        }
        foreach ((string name, (ulong rva, _)) in found)
        {
            symbols[name] = rva;
        }
    }

    /// <summary>VirtualAddress of each section (IMAGE_SECTION_HEADER, 40 bytes each, VirtualAddress at 12).</summary>
    private static uint[] ReadSections(MsfFile msf, int stream)
    {
        if (stream == 0xFFFF || !msf.HasStream(stream))
        {
            return [];
        }
        MsfStream headers = msf.ReadStream(stream, "section header stream");
        int count = headers.Length / DbiLayout.SectionHeaderSize;
        if (count > 0xFFFF)
        {
            throw headers.Fail("section headers", 0, $"{count} section headers, more than 65535");
        }
        uint[] addresses = new uint[count];
        for (int i = 0; i < count; i++)
        {
            addresses[i] = headers.U32(i * DbiLayout.SectionHeaderSize + DbiLayout.SectionVirtualAddressOffset, $"section header[{i}].VirtualAddress");
        }
        return addresses;
    }

    /// <summary>OMAP entries (from, to) flattened, checked to be sorted by "from".</summary>
    private static uint[] ReadOmap(MsfStream stream)
    {
        int count = stream.Length / 8;
        uint[] table = new uint[count * 2];
        for (int i = 0; i < count; i++)
        {
            table[i * 2] = stream.U32(i * 8, $"OMAP[{i}].From");
            table[i * 2 + 1] = stream.U32(i * 8 + 4, $"OMAP[{i}].To");
            if (i > 0 && table[i * 2] < table[i * 2 - 2])
            {
                throw stream.Fail($"OMAP[{i}].From", i * 8, "entries are not sorted by address");
            }
        }
        return table;
    }

    /// <summary>The RVA of an address in the linker's layout: itself without OMAP; otherwise mapped, or null when the
    /// code was removed (maps to 0) or lies before the first entry.</summary>
    private static ulong? ToRva(ulong address, uint[] omap)
    {
        if (omap.Length == 0)
        {
            return address;
        }
        int lo = 0, hi = omap.Length / 2 - 1, found = -1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (omap[mid * 2] <= address)
            {
                found = mid;
                lo = mid + 1;
            }
            else
            {
                hi = mid - 1;
            }
        }
        if (found < 0 || omap[found * 2 + 1] == 0)
        {
            return null;
        }
        return omap[found * 2 + 1] + (address - omap[found * 2]);
    }
}

/// <summary>Layout of the DBI stream header (64 bytes) and the optional debug header that follows the substreams.</summary>
internal static class DbiLayout
{
    public const int VersionSignatureOffset = 0x00;
    public const int VersionHeaderOffset = 0x04;
    public const int AgeOffset = 0x08;
    public const int GlobalStreamIndexOffset = 0x0C;
    public const int BuildNumberOffset = 0x0E;
    public const int PublicStreamIndexOffset = 0x10;
    public const int PdbDllVersionOffset = 0x12;
    public const int SymRecordStreamOffset = 0x14;
    public const int PdbDllRbldOffset = 0x16;
    public const int ModInfoSizeOffset = 0x18;
    public const int SectionContributionSizeOffset = 0x1C;
    public const int SectionMapSizeOffset = 0x20;
    public const int SourceInfoSizeOffset = 0x24;
    public const int TypeServerMapSizeOffset = 0x28;
    public const int MfcTypeServerIndexOffset = 0x2C;
    public const int OptionalDbgHeaderSizeOffset = 0x30;
    public const int ECSubstreamSizeOffset = 0x34;
    public const int FlagsOffset = 0x38;
    public const int MachineOffset = 0x3A;
    public const int HeaderSize = 0x40;

    // slots of the optional debug header (u16 stream numbers, 0xFFFF = none)
    public const int DebugOmapFromSource = 4;
    public const int DebugSectionHeaders = 5;
    public const int DebugOriginalSectionHeaders = 10;

    public const int SectionHeaderSize = 40;
    public const int SectionVirtualAddressOffset = 12;
}

/// <summary>CodeView symbol record kinds read from the symbol record stream.</summary>
internal static class SymbolKinds
{
    public const ushort Udt = 0x1108;
    public const ushort GData32 = 0x110D;
    public const ushort Pub32 = 0x110E;
}
