using System.Buffers.Binary;
using System.Diagnostics;
using System.Text;
using CloudMem.Engine.Symbols;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Symbols;

/// <summary>
/// Hostile PDBs: every prefix of the real test PDB, named corruptions of the superblock, block map, stream directory,
/// info, TPI and DBI streams, crafted type records (cycles, deep chains, bad references, unknown leaves), random
/// corruption, and each limit refused one below a real value and accepted at it. Every failure is a one-line
/// <see cref="PdbFormatException"/> naming the file, the structure and the file offset; nothing hangs.
/// </summary>
public sealed class PdbHostileTests
{
    private const string Source = "PDB test.pdb";
    private static readonly byte[] s_real = PdbLoaderTests.RealPdb();

    private static PdbFormatException Refused(byte[] pdb, ParserLimits? limits = null)
        => Assert.Throws<PdbFormatException>(() => PdbLoader.Load(pdb, Source, limits));

    private static void Refused(byte[] pdb, string structure, string problem, ParserLimits? limits = null)
    {
        PdbFormatException e = Refused(pdb, limits);
        Assert.StartsWith($"{Source}: PDB ", e.Message);
        Assert.Contains(structure, e.Error.Structure);
        Assert.Contains(problem, e.Error.Problem);
        Assert.DoesNotContain('\n', e.Message);
    }

    private static byte[] Patch(byte[] bytes, long offset, uint value)
    {
        byte[] copy = (byte[])bytes.Clone();
        BinaryPrimitives.WriteUInt32LittleEndian(copy.AsSpan((int)offset), value);
        return copy;
    }

    private static uint U32(byte[] bytes, long offset) => BinaryPrimitives.ReadUInt32LittleEndian(bytes.AsSpan((int)offset));

    /// <summary>File offset of the stream directory (first block of the block map).</summary>
    private static long DirectoryOffset(byte[] pdb) => (long)U32(pdb, (long)U32(pdb, 0x34) * 4096) * 4096;

    /// <summary>The streams of the real PDB, to repack with changes.</summary>
    private static List<byte[]?> RealStreams()
    {
        MsfFile msf = MsfFile.Open(s_real, Source, ParserLimits.Default);
        return Enumerable.Range(0, msf.StreamCount).Select(i => (byte[]?)msf.ReadStream(i, "s").Span.ToArray()).ToList();
    }

    [Fact]
    public void Every_prefix_is_refused_with_an_offset_or_loads()
    {
        var watch = Stopwatch.StartNew();
        int refused = 0, loaded = 0;
        for (int length = 0; length < s_real.Length; length += length < 8192 ? 1 : 61)
        {
            try
            {
                PdbLoader.Load(s_real.AsMemory(0, length), Source);
                loaded++;
            }
            catch (PdbFormatException e)
            {
                Assert.StartsWith($"{Source}: PDB ", e.Message);
                refused++;
            }
        }
        Assert.True(refused > 8000, $"{refused} refused, {loaded} loaded");
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(60), $"{watch.Elapsed}");
    }

    [Fact]
    public void Superblock_and_block_map_corruptions_are_named()
    {
        Refused([.. "Microsoft C/C++ MSF 7.00\r\n"u8], "superblock.magic", "inside the signature");
        Refused([.. "Microsoft C/C++ program database 2.00\r\n\u001aJG\0\0"u8, .. new byte[64]], "superblock.magic", "PDB 2.00");
        Refused(new byte[4096], "superblock.magic", "not a PDB");
        Refused(s_real[..40], "superblock", "needs 56 bytes");
        Refused(Patch(s_real, 0x20, 1000), "superblock.BlockSize", "not a power of two");
        Refused(Patch(s_real, 0x28, 0xFFFFFFFF), "superblock.NumBlocks", "limit");
        Refused(Patch(s_real, 0x2C, 0xFFFFFFF0), "superblock.NumDirectoryBytes", "not between");
        byte[] small = MsfBuilder.Write([.. Enumerable.Range(0, 200).Select(_ => new byte[100])], 512);   // 200+ blocks of 512 bytes
        Refused(Patch(small, 0x2C, 512 * 129), "superblock.NumDirectoryBytes", "more than one block map block");
        Refused(Patch(s_real, 0x34, 0xFFFF), "superblock.BlockMapAddr", "is not a block of the file");
        Refused(Patch(s_real, U32(s_real, 0x34) * 4096L, 0x7FFFFFFF), "block map[0]", "is not a block of the file");
        long cut = Math.Min(DirectoryOffset(s_real), U32(s_real, 0x34) * 4096L) + 10;
        PdbFormatException e = Refused(s_real[..(int)cut]);
        Assert.Contains("truncated", e.Message);
        Assert.NotNull(PdbLoader.Load(Patch(s_real, 0x28, U32(s_real, 0x28) + 100), Source));   // blocks declared but never used are not read
    }

    [Fact]
    public void Stream_directory_corruptions_are_named()
    {
        long directory = DirectoryOffset(s_real);
        uint streams = U32(s_real, directory);
        Refused(Patch(s_real, directory, 0xFFFFFFFF), "stream directory.NumStreams", "limit");
        Refused(Patch(s_real, directory, 0x10000), "stream directory.NumStreams", "do not fit");
        Refused(Patch(s_real, directory + 4 + 2 * 4, 0x7FFFFFF0), "stream directory.StreamSizes[2]", "more than the");
        long firstBlock = directory + 4 + streams * 4;   // stream 0's first block (stream 0 is not empty)
        PdbFormatException e = Refused(Patch(s_real, firstBlock + 4, 0xFFFFFFF));
        Assert.Contains("stream directory.blocks of stream", e.Error.Structure);
        Assert.Equal(firstBlock + 4, e.Offset);
    }

    [Fact]
    public void The_repacked_real_streams_load_the_same()
    {
        TypeModel original = PdbLoader.Load(s_real, Source);
        TypeModel repacked = PdbLoader.Load(MsfBuilder.Write(RealStreams(), 1024), Source);
        Assert.Equal(original.TypeCount, repacked.TypeCount);
        Assert.Equal(original.Symbols, repacked.Symbols);
        Assert.Equal(original.FindStruct("_OUTER")!.Fields.Select(f => (f.Name, f.BitOffset)), repacked.FindStruct("_OUTER")!.Fields.Select(f => (f.Name, f.BitOffset)));
    }

    [Fact]
    public void Info_tpi_and_dbi_stream_corruptions_are_named()
    {
        List<byte[]?> streams = RealStreams();
        byte[] With(int stream, int offset, uint value)
        {
            var copy = streams.Select(s => s?.ToArray()).ToList();
            BinaryPrimitives.WriteUInt32LittleEndian(copy[stream].AsSpan(offset), value);
            return MsfBuilder.Write(copy);
        }
        Refused(With(1, 0, 19990604), "PDB info stream.Version", "has no GUID");
        Refused(With(1, 28, 0x7FFFFFFF), "named stream map.StringBytes", "run past the end");
        int names = (int)U32(streams[1]!, 28);
        Refused(With(1, 32 + names + 4, 0xFFFFFFFF), "named stream map.Capacity", "limit");
        Refused(With(2, 12, 0x7FFFFFFF), "TPI header.TypeIndexEnd", "limit");
        Refused(With(2, 12, 0x1000 + 100000), "type 0x", "the records end after");
        Refused(With(2, 16, 0x7FFFFFFF), "TPI header.TypeRecordBytes", "do not fit");
        Refused(With(2, 8, 0x2000), "TPI header.TypeIndexBegin", "do not start at 0x1000");
        Refused(With(2, 4, 8), "TPI header.HeaderSize", "is not between");
        Refused(With(2, 56, 0xFFF0), "RecordLength", "runs past the end");
        Refused(With(3, 0, 0), "DBI stream.VersionSignature", "is not -1");
        Refused(With(3, 0x18, 0x7FFFFFFF), "DBI stream substream size", "do not fit");
        Refused(With(3, 0x30, 0x7FFFFFFF), "DBI stream.OptionalDbgHeaderSize", "do not fit");
        int symbols = BinaryPrimitives.ReadUInt16LittleEndian(streams[3].AsSpan(0x14));
        Refused(With(symbols, 0, 0x110E_FFF0), "symbol record.RecordLength", "runs past the end");
    }

    [Fact]
    public void Symbols_of_an_image_reordered_after_linking_are_mapped_through_omap()
    {
        // The real PDB with an OMAP-from-source stream and original section headers added to its optional debug header:
        // the original .text (0x1000) moves to 0x5000, the original .rdata (0x2000) is removed, .data (0x3000) moves to 0x9000.
        List<byte[]?> streams = RealStreams();
        byte[] dbi = streams[3]!.ToArray();
        int debugHeader = 0x40 + new[] { 0x18, 0x1C, 0x20, 0x24, 0x28, 0x34 }.Sum(o => BinaryPrimitives.ReadInt32LittleEndian(dbi.AsSpan(o)));
        int sectionStream = BinaryPrimitives.ReadUInt16LittleEndian(dbi.AsSpan(debugHeader + 5 * 2));
        Assert.True(BinaryPrimitives.ReadInt32LittleEndian(dbi.AsSpan(0x30)) >= 11 * 2);
        BinaryPrimitives.WriteUInt16LittleEndian(dbi.AsSpan(debugHeader + 4 * 2), (ushort)streams.Count);          // OMAP from source
        BinaryPrimitives.WriteUInt16LittleEndian(dbi.AsSpan(debugHeader + 10 * 2), (ushort)(streams.Count + 1));   // original section headers
        streams[3] = dbi;
        streams.Add([.. B32(0x1000), .. B32(0x5000), .. B32(0x2000), .. B32(0), .. B32(0x3000), .. B32(0x9000)]);
        streams.Add(streams[sectionStream]);

        TypeModel plain = PdbLoader.Load(s_real, Source);
        TypeModel mapped = PdbLoader.Load(MsfBuilder.Write(streams), Source);

        foreach ((string name, ulong rva) in plain.Symbols)
        {
            ulong? expected = rva switch
            {
                >= 0x3000 => rva - 0x3000 + 0x9000,
                >= 0x2000 => null,
                _ => rva - 0x1000 + 0x5000,
            };
            Assert.Equal(expected, mapped.Symbols.TryGetValue(name, out ulong ours) ? ours : null);
        }
        Assert.Contains(plain.Symbols, s => s.Value is >= 0x2000 and < 0x3000);   // the removed section had symbols
        Refused(MsfBuilder.Write([.. streams[..^2], [.. B32(0x3000), .. B32(1), .. B32(0x1000), .. B32(2)], streams[^1]]), "OMAP[1].From", "not sorted");
    }

    // ---- crafted type streams ----

    private static byte[] B16(int value) => BitConverter.GetBytes((ushort)value);
    private static byte[] B32(uint value) => BitConverter.GetBytes(value);
    private static byte[] Str(string text) => [.. Encoding.UTF8.GetBytes(text), 0];

    private static byte[] Record(int kind, params byte[][] parts)
    {
        byte[] payload = [.. B16(kind), .. parts.SelectMany(p => p)];
        while ((payload.Length + 2) % 4 != 0)
        {
            payload = [.. payload, (byte)(0xF0 + (4 - (payload.Length + 2) % 4))];
        }
        return [.. B16(payload.Length), .. payload];
    }

    private static byte[] Struct(string name, uint fieldList, int size, int property = 0)
        => Record(0x1505, B16(1), B16(property), B32(fieldList), B32(0), B32(0), B16(size), Str(name));

    private static byte[] Member(string name, uint type, int offset) => [.. B16(0x150D), .. B16(3), .. B32(type), .. B16(offset), .. Str(name)];

    private static byte[] FieldList(params byte[][] members) => Record(0x1203, members);

    private static byte[] Pointer(uint referent) => Record(0x1002, B32(referent), B32(0x1000C));

    private static byte[] Modifier(uint referent) => Record(0x1001, B32(referent), B16(1));

    /// <summary>A PDB with an info stream, the given TPI records (from 0x1000) and no DBI.</summary>
    private static byte[] Pdb(params byte[][] records)
    {
        byte[] info = [.. B32(20000404), .. B32(1), .. B32(1), .. new byte[16], .. B32(0), .. B32(0), .. B32(0), .. B32(0), .. B32(0)];
        byte[] body = [.. records.SelectMany(r => r)];
        byte[] header = new byte[56];
        BinaryPrimitives.WriteUInt32LittleEndian(header, 20040203);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), 56);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), 0x1000);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(12), 0x1000 + (uint)records.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(16), (uint)body.Length);
        return MsfBuilder.Write([[], info, [.. header, .. body], null]);
    }

    [Fact]
    public void A_crafted_pdb_loads_and_cycles_deep_chains_and_bad_references_are_refused()
    {
        // 0x1000 fields, 0x1001 struct, 0x1002 pointer to the struct
        TypeModel model = PdbLoader.Load(Pdb(FieldList(Member("Self", 0x1002, 0), Member("Value", 0x74, 8)), Struct("_NODE", 0x1000, 16), Pointer(0x1001)), Source);
        TypeInfo node = model.FindStruct("_NODE")!;
        Assert.Equal((16, 2), (node.Size, node.Fields.Count));
        Assert.Same(node, node.Fields[0].Type.Target);

        Refused(Pdb(Modifier(0x1001), Modifier(0x1000), Struct("S", 0x1003, 4), FieldList(Member("m", 0x1000, 0))), "type 0x", "nested deeper than the limit");
        // A pointer to itself is a cycle stopped by the cache; 60 distinct pointers in a row are deep but within the limit.
        TypeInfo loop = PdbLoader.Load(Pdb(Pointer(0x1000), FieldList(Member("p", 0x1000, 0)), Struct("Loop", 0x1001, 8)), Source).FindField("Loop", "p")!.Type;
        Assert.Same(loop, loop.Target);
        Assert.NotNull(PdbLoader.Load(Pdb([.. Enumerable.Range(0, 60).Select(i => Pointer(0x1001 + (uint)i)), Modifier(0x74), FieldList(Member("p", 0x1000, 0)), Struct("Deep", 0x1000 + 61, 8)]), Source).FindStruct("Deep"));
        Refused(Pdb([.. Enumerable.Range(0, 100).Select(i => Pointer(0x1001 + (uint)i)), Modifier(0x74), FieldList(Member("p", 0x1000, 0)), Struct("Deep", 0x1000 + 101, 8)]), "type 0x", "nested deeper than the limit of 64");
        Refused(Pdb([.. Enumerable.Range(0, 100).Select(i => Modifier(0x1001 + (uint)i)), Modifier(0x74), FieldList(Member("m", 0x1000, 0)), Struct("S", 0x1065, 4)]), "type 0x", "nested deeper than the limit");
        Refused(Pdb(FieldList(Member("m", 0x5000, 0)), Struct("S", 0x1000, 4)), "LF_MEMBER.Type", "outside");
        Refused(Pdb(Pointer(0x74), Struct("S", 0x1000, 4)), "FieldList", "not an LF_FIELDLIST");
        Refused(Pdb(Struct("S", 0x7000, 4)), "FieldList", "not a type record");
        Refused(Pdb(FieldList([.. B16(0x1404), .. B16(0), .. B32(0x1001)]), FieldList([.. B16(0x1404), .. B16(0), .. B32(0x1000)]), Struct("S", 0x1000, 4)),
            "continuation", "LF_INDEX cycle");
        // 200 small lists all continuing into one big list, each used by a struct: the big list would be walked 200 times.
        byte[] big = FieldList([.. Enumerable.Range(0, 1000).SelectMany(i => Member($"m{i}", 0x74, i * 4))]);
        byte[][] shared = [big, .. Enumerable.Range(0, 200).Select(_ => FieldList([.. B16(0x1404), .. B16(0), .. B32(0x1000)])),
            .. Enumerable.Range(0, 200).Select(i => Struct($"S{i}", 0x1001 + (uint)i, 4000))];
        Refused(Pdb(shared), "members", "reached more often than their size allows");
        TypeModel sharing = PdbLoader.Load(Pdb(big, Struct("A", 0x1000, 4000), Struct("B", 0x1000, 4000)), Source);
        Assert.Same(sharing.FindStruct("A")!.Fields, sharing.FindStruct("B")!.Fields);
        Refused(Pdb(FieldList([.. B16(0x150D), .. B16(3), .. B32(0x74), .. B16(0x8010), .. new byte[8], .. Str("m")]), Struct("S", 0x1000, 4)),
            "LF_MEMBER.Offset", "numeric leaf 0x8010");
        Refused(Pdb(FieldList([.. B16(0x1234), .. new byte[6]]), Struct("S", 0x1000, 4)), "member", "unknown member record kind 0x1234");
        Refused(Pdb(FieldList([.. B16(0x150D), .. B16(3), .. B32(0x74), .. B16(0), .. "abc"u8]), Struct("S", 0x1000, 4)), "LF_MEMBER.Name", "no NUL terminator");
        Refused(Pdb(Record(0x1505, B16(1), B16(0), B32(0), B32(0), B32(0), B16(0x8004), B32(0x80000000), Str("Big"))), "Size", "out of range");
    }

    [Fact]
    public void Random_corruption_is_refused_with_an_offset_or_loads()
    {
        var random = new Random(20240605);
        var watch = Stopwatch.StartNew();
        int refused = 0;
        for (int i = 0; i < 200; i++)
        {
            byte[] copy = (byte[])s_real.Clone();
            int changes = random.Next(1, 9);
            for (int c = 0; c < changes; c++)
            {
                // Half of the changes hit the metadata pages (superblock, directory, map), the rest anywhere.
                int offset = random.Next(2) == 0 ? random.Next(0, 64) + 4096 * random.Next(0, 3) : random.Next(copy.Length);
                copy[offset] = (byte)random.Next(256);
            }
            try
            {
                PdbLoader.Load(copy, Source);
            }
            catch (PdbFormatException e)
            {
                Assert.DoesNotContain('\n', e.Message);
                refused++;
            }
        }
        Assert.True(refused > 0);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(60), $"{watch.Elapsed}");
    }

    [Fact]
    public void Limits_are_enforced_and_reasonable_values_accepted()
    {
        MsfFile msf = MsfFile.Open(s_real, Source, ParserLimits.Default);
        TypeModel model = PdbLoader.Load(s_real, Source);
        var exact = new ParserLimits
        {
            MaxPdbBytes = s_real.Length,
            MaxPdbStreams = msf.StreamCount,
            MaxTypes = model.TypeCount,
            MaxTypeMembers = 2049,            // Test::Huge
            MaxSymbols = model.Symbols.Count,
        };
        Assert.Equal(model.Symbols.Count, PdbLoader.Load(s_real, Source, exact).Symbols.Count);
        Refused(s_real, "superblock", "limit of", exact with { MaxPdbBytes = s_real.Length - 1 });
        Refused(s_real, "stream directory.NumStreams", "limit", exact with { MaxPdbStreams = msf.StreamCount - 1 });
        Refused(s_real, "TPI header.TypeIndexEnd", "limit", exact with { MaxTypes = model.TypeCount - 1 });
        Refused(s_real, "members", "limit of 2048 members", exact with { MaxTypeMembers = 2048 });
        Refused(s_real, "symbol record", "limit of", exact with { MaxSymbols = model.Symbols.Count - 1 });
        Refused(s_real, "Name", "longer than the limit of 20", exact with { MaxNameLength = 20 });
        Refused(Pdb([.. Enumerable.Range(0, 10).Select(i => Pointer(0x1001 + (uint)i)), Modifier(0x74), FieldList(Member("p", 0x1000, 0)), Struct("S", 0x100B, 8)]),
            "type 0x", "nested deeper than the limit of 4",
            new ParserLimits { MaxTypeDepth = 4 });
    }
}
