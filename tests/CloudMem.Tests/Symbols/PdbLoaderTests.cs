using System.Buffers.Binary;
using System.Globalization;
using System.Text.RegularExpressions;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Symbols;

/// <summary>
/// The PDB reader on a real PDB written by lld-link from clang-cl objects (TestData/pdb, see make.sh), compared with
/// what LLVM's own tools report about the same files: every struct, member, bitfield, array and enum against
/// <c>llvm-pdbutil dump -types</c>, public symbols against lld-link's map file, GUID and age against the DLL's RSDS
/// record (<c>llvm-readobj --coff-debug-directory</c> and our <see cref="KernelImageScanner"/>).
/// </summary>
public sealed partial class PdbLoaderTests
{
    internal static string DataFile(string name) => Path.Combine(AppContext.BaseDirectory, "TestData", "pdb", name);

    internal static byte[] RealPdb() => File.ReadAllBytes(DataFile("types.pdb"));

    private static readonly Lazy<TypeModel> s_model = new(() => PdbLoader.Load(DataFile("types.pdb")));

    /// <summary>One record of the llvm-pdbutil type dump: index, leaf, name and the text lines under it.</summary>
    private sealed record DumpRecord(uint Index, string Leaf, string Name, List<string> Lines)
    {
        public string Text => string.Join("\n", Lines);

        public uint? Ref(string label)
        {
            Match m = Regex.Match(Text, Regex.Escape(label) + @"(?: =|:) (0x[0-9A-F]+|<no type>)");
            return m.Success && m.Groups[1].Value.StartsWith("0x", StringComparison.Ordinal) ? Hex(m.Groups[1].Value) : null;
        }

        public long Int(string pattern) => long.Parse(Regex.Match(Text, pattern).Groups[1].Value, CultureInfo.InvariantCulture);
    }

    private static uint Hex(string text) => uint.Parse(text.AsSpan(2), NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    [GeneratedRegex(@"^  0x([0-9A-F]{4}) \| (LF_\w+) \[size = \d+\](?: `(.*)`)?$")]
    private static partial Regex RecordLine();

    [GeneratedRegex(@"- LF_MEMBER \[name = `(\w*)`, Type = (0x[0-9A-F]+)[^,]*, offset = (\d+),")]
    private static partial Regex MemberLine();

    [GeneratedRegex(@"- LF_ENUMERATE \[(\w+) = (\d+)\]")]
    private static partial Regex EnumerateLine();

    private static Dictionary<uint, DumpRecord> ReadTypeDump()
    {
        var records = new Dictionary<uint, DumpRecord>();
        DumpRecord? current = null;
        foreach (string line in File.ReadLines(DataFile("types.txt")))
        {
            Match m = RecordLine().Match(line);
            if (m.Success)
            {
                current = new DumpRecord(Hex("0x" + m.Groups[1].Value), m.Groups[2].Value, m.Groups[3].Value, []);
                records[current.Index] = current;
            }
            else if (current is not null && line.Length > 0)
            {
                current.Lines.Add(line.Trim());
            }
        }
        return records;
    }

    /// <summary>The LF_MEMBER lines of a field list and its LF_INDEX continuations.</summary>
    private static IEnumerable<(string Name, uint Type, long Offset)> Members(Dictionary<uint, DumpRecord> dump, uint list)
    {
        for (uint? next = list; next is uint l;)
        {
            DumpRecord record = dump[l];
            foreach (Match m in MemberLine().Matches(record.Text))
            {
                yield return (m.Groups[1].Value, Hex(m.Groups[2].Value), long.Parse(m.Groups[3].Value, CultureInfo.InvariantCulture));
            }
            Match c = Regex.Match(record.Text, @"LF_INDEX continuation = (0x[0-9A-F]+)");
            next = c.Success ? Hex(c.Groups[1].Value) : null;
        }
    }

    /// <summary>Sizes of the simple types the test source uses (CodeView basic type in the low byte, mode 6 = 64-bit pointer).</summary>
    private static int SimpleSize(uint index) => (index >> 8) == 6 ? 8 : (index & 0xFF) switch
    {
        0x10 or 0x20 or 0x70 => 1,
        0x11 or 0x21 => 2,
        0x12 or 0x22 or 0x74 or 0x75 or 0x40 => 4,
        0x13 or 0x23 or 0x41 => 8,
        _ => throw new InvalidOperationException($"simple type 0x{index:X} not in the test's table"),
    };

    [Fact]
    public void Every_struct_member_and_bitfield_equals_llvm_pdbutil()
    {
        TypeModel model = s_model.Value;
        Dictionary<uint, DumpRecord> dump = ReadTypeDump();
        int structs = 0, members = 0, bitfields = 0;
        foreach (DumpRecord record in dump.Values.Where(r => r.Leaf is "LF_STRUCTURE" or "LF_CLASS" or "LF_UNION"))
        {
            if (record.Text.Contains("forward ref", StringComparison.Ordinal) || record.Name.Contains("<unnamed-tag>", StringComparison.Ordinal))
            {
                continue;
            }
            TypeInfo? type = model.FindStruct(record.Name);
            Assert.True(type is not null, $"{record.Name} missing");
            Assert.Equal(record.Int(@"sizeof (\d+)"), type.Size);
            Assert.Equal(record.Leaf == "LF_UNION" ? TypeKind.Union : TypeKind.Struct, type.Kind);
            structs++;
            foreach ((string name, uint memberType, long offset) in Members(dump, record.Ref("field list")!.Value))
            {
                FieldInfo? field = type.Fields.SingleOrDefault(f => f.Name == name);
                Assert.True(field is not null, $"{record.Name}.{name} missing");
                long bitOffset = offset * 8;
                int bitSize = 0;
                uint typeIndex = memberType;
                TypeInfo fieldType = field.Type;
                if (dump.TryGetValue(typeIndex, out DumpRecord? target) && target.Leaf == "LF_BITFIELD")
                {
                    bitOffset += target.Int(@"bit offset = (\d+)");
                    bitSize = (int)target.Int(@"# bits = (\d+)");
                    typeIndex = target.Ref("type")!.Value;
                    bitfields++;
                }
                Assert.True((bitOffset, bitSize) == (field.BitOffset, field.BitSize),
                    $"{record.Name}.{name}: llvm-pdbutil ({bitOffset}, {bitSize}), ours ({field.BitOffset}, {field.BitSize})");
                CheckType(dump, typeIndex, fieldType, $"{record.Name}.{name}");
                members++;
            }
            if (record.Name != "Test::Huge")   // its generated members are left out of the dump (see make.sh)
            {
                Assert.Equal(Members(dump, record.Ref("field list")!.Value).Count(), type.Fields.Count(f => f.Name.Length > 0));
            }
        }
        Assert.True(structs >= 8 && members >= 40 && bitfields >= 8, $"{structs} structs, {members} members, {bitfields} bitfields");
    }

    private static void CheckType(Dictionary<uint, DumpRecord> dump, uint index, TypeInfo ours, string where)
    {
        if (index < 0x1000)
        {
            Assert.True(SimpleSize(index) == ours.Size, $"{where}: simple type 0x{index:X} has size {ours.Size}");
            Assert.Equal((index >> 8) == 6 ? TypeKind.Pointer : ours.Kind, ours.Kind);
            return;
        }
        DumpRecord record = dump[index];
        switch (record.Leaf)
        {
            case "LF_POINTER":
                Assert.True(ours.Kind == TypeKind.Pointer && ours.Size == 8, $"{where}: {ours}");
                Assert.Contains("kind = ptr64", record.Text);
                break;
            case "LF_ARRAY":
                Assert.True(ours.Kind == TypeKind.Array && ours.Size == record.Int(@"size: (\d+)"), $"{where}: {ours} of {ours.Size} bytes");
                CheckType(dump, record.Ref("element type")!.Value, ours.Target!, where + "[]");
                Assert.Equal(ours.Size / ours.Target!.Size, ours.ArrayLength);
                break;
            case "LF_MODIFIER":
                CheckType(dump, record.Ref("referent")!.Value, ours, where + " (modified)");
                break;
            case "LF_ENUM":
                Assert.Equal(TypeKind.Enum, ours.Kind);
                break;
            case "LF_STRUCTURE" or "LF_CLASS" or "LF_UNION":
                Match forward = Regex.Match(record.Text, @"forward ref \(-> (0x[0-9A-F]+)\)");
                DumpRecord definition = forward.Success ? dump[Hex(forward.Groups[1].Value)] : record;
                Assert.True(ours.IsAggregate, $"{where}: {ours} is not a struct or union (forward reference not resolved?)");
                Assert.Equal(definition.Int(@"sizeof (\d+)"), ours.Size);
                break;
            default:
                throw new InvalidOperationException($"{where}: {record.Leaf} not checked by the test");
        }
    }

    [Fact]
    public void Enum_values_equal_llvm_pdbutil_with_negative_values_sign_extended()
    {
        TypeModel model = s_model.Value;
        Dictionary<uint, DumpRecord> dump = ReadTypeDump();
        DumpRecord color = dump.Values.Single(r => r.Leaf == "LF_ENUM" && r.Name == "_COLOR");
        var expected = EnumerateLine().Matches(dump[color.Ref("field list")!.Value].Text)
            .ToDictionary(m => m.Groups[1].Value, m => (long)(int)uint.Parse(m.Groups[2].Value, CultureInfo.InvariantCulture));
        TypeInfo ours = model.FindType("_COLOR")!;
        Assert.Equal(expected, ours.EnumValues);
        Assert.Equal(-3, ours.EnumValues["ColorBlue"]);
        Assert.True(ours.IsSigned);
        Assert.Equal(4, ours.Size);
        TypeInfo mode = model.FindType("Test::Derived::Mode")!;
        Assert.Equal((TypeKind.Enum, 1, false, 200L), (mode.Kind, mode.Size, mode.IsSigned, mode.EnumValues["On"]));
    }

    [Fact]
    public void Public_symbols_are_the_rvas_of_the_linker_map()
    {
        TypeModel model = s_model.Value;
        string[] map = File.ReadAllLines(DataFile("types.map"));
        ulong imageBase = ulong.Parse(Regex.Match(string.Join("\n", map), @"Preferred load address is ([0-9a-f]+)").Groups[1].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture);
        var expected = new Dictionary<string, ulong>();
        foreach (string line in map)
        {
            Match m = Regex.Match(line, @"^ [0-9a-f]{4}:[0-9a-f]{8}\s+(\S+)\s+([0-9a-f]{16})\s");
            if (m.Success)
            {
                expected[m.Groups[1].Value] = ulong.Parse(m.Groups[2].Value, NumberStyles.HexNumber, CultureInfo.InvariantCulture) - imageBase;
            }
        }
        Assert.True(expected.Count >= 10, $"{expected.Count} map entries");
        int publics = Regex.Matches(File.ReadAllText(DataFile("publics.txt")), "S_PUB32").Count;
        Assert.Equal(expected.Count, publics);
        foreach ((string name, ulong rva) in expected)
        {
            Assert.True(model.Symbols.TryGetValue(name, out ulong ours), $"{name} missing");
            Assert.True(rva == ours, $"{name}: map 0x{rva:X}, ours 0x{ours:X}");
        }
        Assert.Equal(0x30F8ul, model.Symbols["PsActiveProcessHead"]);
    }

    [Fact]
    public void Guid_and_age_equal_the_dlls_rsds_record()
    {
        PdbIdentity identity = PdbLoader.ReadIdentity(DataFile("types.pdb"));
        string readobj = File.ReadAllText(DataFile("debug-directory.txt"));
        byte[] guidBytes = Convert.FromHexString(Regex.Match(readobj, @"PDBGUID: \(([0-9A-F ]+)\)").Groups[1].Value.Replace(" ", "", StringComparison.Ordinal));
        uint age = uint.Parse(Regex.Match(readobj, @"PDBAge: (\d+)").Groups[1].Value, CultureInfo.InvariantCulture);
        Assert.Equal(PdbGuid.Format(guidBytes), identity.Guid);
        Assert.Equal(age, identity.DbiAge);
        Assert.Equal(age, identity.Age);
        string summary = File.ReadAllText(DataFile("summary.txt"));
        Assert.Equal(Regex.Match(summary, @"GUID: \{([0-9A-F-]+)\}").Groups[1].Value.Replace("-", "", StringComparison.Ordinal), identity.Guid);
        Assert.Equal(uint.Parse(Regex.Match(summary, @"Signature: (\d+)").Groups[1].Value, CultureInfo.InvariantCulture), identity.Signature);
        Assert.Equal(20000404u, identity.Version);
        Assert.Contains("/names", identity.NamedStreams.Keys);

        // Our own scanner reads the same record from the DLL laid out as the loader maps it.
        Assert.True(KernelImageScanner.TryReadImage(new ArrayMemory(LoadImage(File.ReadAllBytes(DataFile("types.dll")))), 0, out PeImageCandidate? image));
        Assert.Equal(("types.pdb", identity.Guid, identity.DbiAge!.Value), (image.PdbName, image.Guid, image.Age));
        Assert.True(identity.Matches(image.Guid.ToLowerInvariant(), image.Age));
        Assert.False(identity.Matches(image.Guid, image.Age + 1));
    }

    [Fact]
    public void The_model_answers_like_an_isf_table()
    {
        TypeModel model = s_model.Value;
        Assert.StartsWith("PDB types.pdb", model.ToString());
        Assert.True(model.TryGetOffset("_EPROCESS_LIKE", "ActiveProcessLinks", out int links));
        Assert.Equal(24, links);
        Assert.True(model.TryGetOffset("_EPROCESS_LIKE", "ActiveProcessLinks.Blink", out int blink));
        Assert.Equal(32, blink);
        FieldInfo exited = model.FindField("_EPROCESS_LIKE", "Exited")!;
        Assert.Equal((64 * 8 + 3L, 1), (exited.BitOffset, exited.BitSize));
        Assert.True(model.TryGetSize("_LIST_ENTRY", out int size) && size == 16);
        Assert.Same(model.FindStruct("_LIST_ENTRY"), model.FindStruct("LIST_ENTRY"));       // S_UDT typedef
        Assert.Same(model.FindStruct("_OUTER"), model.FindStruct("OUTER"));
        TypeInfo flink = model.FindField("_LIST_ENTRY", "Flink")!.Type;
        Assert.Same(model.FindStruct("_LIST_ENTRY"), flink.Target);                          // self pointer through a forward reference
        TypeInfo later = model.FindField("_OUTER", "Later")!.Type.Target!;
        Assert.Equal((TypeKind.Struct, 16), (later.Kind, later.Size));                      // pointed to before its definition
        Assert.True(model.TryGetOffset("_OUTER", "Value.AsFloat", out int asFloat) && asFloat == 24);
        Assert.Equal(TypeKind.Function, model.FindField("_OUTER", "Callback")!.Type.Target!.Kind);
        TypeInfo matrix = model.FindField("_OUTER", "Matrix")!.Type;
        Assert.Equal((2, 3, 48), (matrix.ArrayLength, matrix.Target!.ArrayLength, matrix.Size));
        Assert.Equal("int", model.FindField("_OUTER", "Qualified")!.Type.Name);              // const volatile folded away
        Assert.Equal(TypeKind.Void, model.FindField("_OUTER", "Pointer")!.Type.Target!.Kind);
        Assert.Equal(4, model.FindType("int")!.Size);

        // C++: a base class is an anonymous member, so its fields are found through the derived class.
        Assert.True(model.TryGetOffset("Test::Derived", "BaseValue", out int baseValue) && baseValue == 8);
        Assert.True(model.TryGetOffset("Test::Derived", "DerivedValue", out int derived) && derived == 16);
        Assert.True(model.TryGetSize("Test::Derived", out int derivedSize) && derivedSize == 32);
    }

    [Fact]
    public void A_field_list_continued_with_lf_index_is_read_whole()
    {
        TypeInfo huge = s_model.Value.FindStruct("Test::Huge")!;
        Assert.Equal(2049, huge.Fields.Count);
        Assert.Equal(8196, huge.Size);
        for (int i = 0; i < 2048; i++)
        {
            // M1024(d) expands to names with d then five base-4 digits, in declaration order.
            string digits = (i / 1024).ToString(CultureInfo.InvariantCulture);
            for (int shift = 8; shift >= 0; shift -= 2)
            {
                digits += ((i >> shift) & 3).ToString(CultureInfo.InvariantCulture);
            }
            FieldInfo field = huge.Fields[i];
            Assert.Equal(("LongMemberNameToFillTheFieldList_" + digits, i * 32L), (field.Name, field.BitOffset));
        }
        Assert.Equal(("LastMember", 8192 * 8L), (huge.Fields[^1].Name, huge.Fields[^1].BitOffset));
    }

    /// <summary>A PE file laid out as the loader maps it: headers, then each section at its virtual address.</summary>
    internal static byte[] LoadImage(byte[] file)
    {
        int nt = BinaryPrimitives.ReadInt32LittleEndian(file.AsSpan(0x3C));
        int sections = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(nt + 6));
        int optionalSize = BinaryPrimitives.ReadUInt16LittleEndian(file.AsSpan(nt + 20));
        int optional = nt + 24;
        byte[] image = new byte[BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(optional + 56))];
        int headers = (int)BinaryPrimitives.ReadUInt32LittleEndian(file.AsSpan(optional + 60));
        file.AsSpan(0, headers).CopyTo(image);
        for (int i = 0; i < sections; i++)
        {
            ReadOnlySpan<byte> section = file.AsSpan(optional + optionalSize + i * 40, 40);
            int va = (int)BinaryPrimitives.ReadUInt32LittleEndian(section[12..]);
            int rawSize = (int)BinaryPrimitives.ReadUInt32LittleEndian(section[16..]);
            int raw = (int)BinaryPrimitives.ReadUInt32LittleEndian(section[20..]);
            file.AsSpan(raw, Math.Min(rawSize, image.Length - va)).CopyTo(image.AsSpan(va));
        }
        return image;
    }

    /// <summary>One run over a byte array at address 0.</summary>
    private sealed class ArrayMemory(byte[] bytes) : IPhysicalMemory
    {
        public IReadOnlyList<PhysicalRun> Runs { get; } = [new PhysicalRun(0, (ulong)bytes.Length, 0)];
        public ulong MaxAddress => (ulong)bytes.Length;
        public string Description => "array";

        public int Read(ulong physicalAddress, Span<byte> destination)
        {
            if (physicalAddress >= (ulong)bytes.Length)
            {
                return 0;
            }
            int count = (int)Math.Min((ulong)destination.Length, (ulong)bytes.Length - physicalAddress);
            bytes.AsSpan((int)physicalAddress, count).CopyTo(destination);
            return count;
        }

        public void Dispose()
        {
        }
    }
}
