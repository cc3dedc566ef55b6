using System.Buffers.Binary;
using System.Diagnostics;
using CloudMem.Engine.Symbols;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using static CloudMem.Tests.Support.BtfBuilder;

namespace CloudMem.Tests.Symbols;

/// <summary>BTF blobs built in the test: every kind, bitfield encodings, qualifier folding, and hostile input
/// (truncations, out-of-range ids, cycles, huge counts, each limit with an accepts-reasonable control).</summary>
public sealed class BtfLoaderTests
{
    /// <summary>A small kernel-like type graph using every kind.</summary>
    private static BtfBuilder Sample()
    {
        var b = new BtfBuilder();
        int i32 = b.AddInt("int", 4, signed: true);                              // 1
        int u32 = b.AddInt("unsigned int", 4, signed: false);                    // 2
        int u64 = b.AddInt("long unsigned int", 8, signed: false);               // 3
        int chr = b.AddInt("char", 1, signed: true);                             // 4
        int listHead = 5;
        int listPtr = 6;
        Assert.Equal(listHead, b.AddStruct("list_head", 16, ("next", listPtr, 0, 0), ("prev", listPtr, 64, 0)));
        Assert.Equal(listPtr, b.AddRef(Ptr, "", listHead));
        int typedefU32 = b.AddRef(Typedef, "u32", u32);                          // 7
        int constU32 = b.AddRef(Const, "", typedefU32);                          // 8
        int volatileU32 = b.AddRef(BtfBuilder.Volatile, "", constU32);                      // 9
        int comm = b.AddArray(chr, i32, 16);                                     // 10
        int anonUnion = b.AddUnion("", 8, ("a", i32, 0, 0), ("b", u64, 0, 0));   // 11
        int task = 12, taskPtr = 13, constTask = 14;
        Assert.Equal(task, b.AddStruct("task", 56,
            ("pid", i32, 0, 0), ("flag", volatileU32, 32, 3), ("more", typedefU32, 35, 5), ("", anonUnion, 64, 0),
            ("tasks", listHead, 128, 0), ("comm", comm, 256, 0), ("parent", taskPtr, 384, 0)));
        Assert.Equal(taskPtr, b.AddRef(Ptr, "", constTask));
        Assert.Equal(constTask, b.AddRef(Const, "", task));
        b.AddRef(Typedef, "task_t", task);                                       // 15
        b.AddEnum("state", 4, signed: true, ("RUNNING", 0), ("DEAD", -1));      // 16
        b.AddEnum64("big", signed: false, ("X", 0x1_0000_0000L));               // 17
        int proto = b.AddFuncProto(i32, ("x", i32));                             // 18
        b.AddRef(Func, "do_it", proto);                                          // 19
        int variable = b.Raw(b.Str("init_task"), Info(Var), (uint)task, 1);      // 20
        b.Raw(b.Str(".data"), Info(Datasec, 1), 56, (uint)variable, 0, 56);      // 21
        b.Raw(b.Str("double"), Info(Float), 8);                                  // 22
        b.Raw(b.Str("tag"), Info(DeclTag), (uint)task, unchecked((uint)-1));     // 23
        int tagged = b.AddRef(TypeTag, "user", listHead);                        // 24
        b.AddRef(Ptr, "", tagged);                                               // 25
        b.Raw(b.Str("opaque"), Info(Fwd), 0);                                    // 26
        int bits3 = b.AddInt("unsigned int", 4, signed: false, bits: 3);         // 27
        int bits5 = b.AddInt("unsigned int", 4, signed: false, bits: 5, bitOffset: 2);
        b.AddStruct("old_bits", 4, ("x", bits3, 0, 0), ("y", bits5, 1, 0));      // 29: pre-kind_flag bitfields
        b.AddRef(Restrict, "", listPtr);                                         // 30
        return b;
    }

    [Fact]
    public void Every_kind_loads_into_the_model()
    {
        TypeModel model = BtfLoader.Load(Sample().Build(), "sample");
        Assert.Equal(30, model.TypeCount);
        Assert.Equal("sample", model.Source);
        Assert.Empty(model.Symbols);

        TypeInfo task = model.FindStruct("task")!;
        Assert.Equal(56, task.Size);
        Assert.Equal(["pid", "flag", "more", "", "tasks", "comm", "parent"], task.Fields.Select(f => f.Name));
        FieldInfo flag = task.FindField("flag")!;
        Assert.Equal((32L, 3, 4), (flag.BitOffset, flag.BitSize, flag.Offset));
        Assert.Equal("u32", flag.Type.Name);                  // volatile and const skipped
        Assert.Equal(4, flag.Type.Size);
        Assert.False(flag.Type.Resolve().IsSigned);
        Assert.Equal((35L, 5), (task.FindField("more")!.BitOffset, task.FindField("more")!.BitSize));
        Assert.Equal(0, task.FindField("pid")!.BitSize);

        // Anonymous union members are found with the union's offset added.
        Assert.Equal(8, task.FindField("b")!.Offset);
        Assert.Equal(8, model.FindField("task", "a")!.Offset);
        Assert.Null(task.FindField("nothing"));
        Assert.Null(task.FindField(""));

        TypeInfo parent = task.FindField("parent")!.Type;
        Assert.Equal(TypeKind.Pointer, parent.Kind);
        Assert.Same(task, parent.Target);                     // pointer to const task -> task
        Assert.Equal(8, parent.Size);
        TypeInfo commType = task.FindField("comm")!.Type;
        Assert.Equal((TypeKind.Array, 16, 16, "char"), (commType.Kind, commType.ArrayLength, commType.Size, commType.Target!.Name));
        Assert.Equal("char[16]", commType.ToString());
        Assert.Equal("struct task *", parent.ToString());

        Assert.True(model.TryGetOffset("task", "tasks.prev", out int prev));
        Assert.Equal(24, prev);
        Assert.True(model.TryGetOffset("task", "comm", out int commOffset));
        Assert.Equal(32, commOffset);
        Assert.False(model.TryGetOffset("task", "parent.pid", out _));   // pointers are not followed
        Assert.False(model.TryGetOffset("task", "tasks.nope", out _));
        Assert.False(model.TryGetOffset("nope", "pid", out _));
        Assert.Equal(24, model.FindField("task", "tasks.prev")!.Offset);

        // Typedefs: FindType gives the typedef, FindStruct reaches the struct through it.
        TypeInfo taskT = model.FindType("task_t")!;
        Assert.Equal((TypeKind.Typedef, 56), (taskT.Kind, taskT.Size));
        Assert.Same(task, taskT.Resolve());
        Assert.Same(task, model.FindStruct("task_t"));
        Assert.Equal(24, taskT.FindField("tasks")!.Offset + 8);
        Assert.True(model.TryGetSize("task_t", out int size) && size == 56);

        TypeInfo state = model.FindType("state")!;
        Assert.Equal((TypeKind.Enum, 4, true), (state.Kind, state.Size, state.IsSigned));
        Assert.Equal(-1, state.EnumValues["DEAD"]);
        Assert.Equal(0x1_0000_0000L, model.FindType("big")!.EnumValues["X"]);
        Assert.Equal(TypeKind.Function, model.FindType("do_it")!.Kind);
        Assert.Equal("int", model.FindType("do_it")!.Target!.Kind == TypeKind.Function ? model.FindType("do_it")!.Target!.Target!.Name : "");
        Assert.Equal((TypeKind.Other, 56), (model.FindType("init_task")!.Kind, model.FindType("init_task")!.Size));
        Assert.Equal((TypeKind.Float, 8), (model.FindType("double")!.Kind, model.FindType("double")!.Size));
        Assert.Equal(TypeKind.Forward, model.FindType("opaque")!.Kind);
        Assert.Null(model.FindStruct("opaque"));
        Assert.Equal(TypeKind.Int, model.FindType("unsigned int")!.Kind);

        // Type tags are skipped like qualifiers.
        TypeInfo taggedPointer = model.Types.Single(t => t.Id == 25);
        Assert.Same(model.FindStruct("list_head"), taggedPointer.Target);

        // Bitfields of BTF without kind_flag are described by their INT type.
        TypeInfo oldBits = model.FindStruct("old_bits")!;
        Assert.Equal((0L, 3), (oldBits.FindField("x")!.BitOffset, oldBits.FindField("x")!.BitSize));
        Assert.Equal((3L, 5), (oldBits.FindField("y")!.BitOffset, oldBits.FindField("y")!.BitSize));
    }

    [Fact]
    public void A_32_byte_header_with_a_layout_section_lets_unknown_kinds_be_skipped()
    {
        BtfBuilder b = Sample();
        // Kind 25 (unknown to this reader) with 4 bytes of extra data and 8-byte entries, vlen 2.
        b.Raw(b.Str("future"), Info(25, 2), 0, 7, 1, 2, 3, 4);
        var layout = new byte[26 * 4];
        layout[25 * 4] = 4;
        layout[25 * 4 + 1] = 8;
        b.LayoutSection = layout;
        TypeModel model = BtfLoader.Load(b.Build(), "future");
        Assert.Equal(31, model.TypeCount);
        Assert.Equal(TypeKind.Other, model.FindType("future")!.Kind);
        Assert.Equal(56, model.FindStruct("task")!.Size);

        b.LayoutSection = null;
        var e = Assert.Throws<BtfFormatException>(() => BtfLoader.Load(b.Build(), "future"));
        Assert.Contains("unknown type kind 25", e.Message);
    }

    [Fact]
    public void Every_prefix_of_a_blob_is_a_format_error()
    {
        byte[] blob = Sample().Build();
        for (int length = 0; length < blob.Length; length++)
        {
            var e = Assert.Throws<BtfFormatException>(() => BtfLoader.Load(blob.AsSpan(0, length), "prefix"));
            Assert.StartsWith("prefix: BTF ", e.Message);
            Assert.DoesNotContain('\n', e.Message);
        }
    }

    public static TheoryData<string, int, uint, string> HeaderCorruptions => new()
    {
        { "bad magic", 0, 0x0001_1234, "is not the BTF magic" },
        { "big-endian magic", 0, 0x0001_9FEB, "big-endian BTF" },
        { "version 2", 0, 0x0002_EB9F, "version 2 is not supported" },
        { "hdr_len too small", 4, 20, "header length 20" },
        { "hdr_len huge", 4, 0x1000_0000, "header length" },
        { "hdr_len unaligned", 4, 26, "header length 26" },
        { "type_off misaligned", 8, 2, "section" },
        { "type_len past the end", 12, 0x7FFF_FFF0, "runs past the end of the blob" },
        { "str_off past the end", 16, 0xFFFF_FFFF, "runs past the end of the blob" },
        { "str_len zero", 20, 0, "string section is empty" },
        { "str section overlaps types", 16, 4, "overlaps the type section" },
    };

    [Theory]
    [MemberData(nameof(HeaderCorruptions))]
    public void Corrupted_header_fields_are_refused(string name, int offset, uint value, string expected)
    {
        byte[] blob = Sample().Build();
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(offset), value);
        var e = Assert.Throws<BtfFormatException>(() => BtfLoader.Load(blob, name));
        Assert.Contains(expected, e.Message);
        Assert.Contains("header", e.Message);
    }

    [Fact]
    public void String_section_must_end_in_nul()
    {
        byte[] blob = Sample().Build();
        blob[^1] = (byte)'x';
        Assert.Contains("NUL", Assert.Throws<BtfFormatException>(() => BtfLoader.Load(blob, "s")).Message);
    }

    [Fact]
    public void Type_ids_out_of_range_are_refused_with_the_offset_of_the_reference()
    {
        var pointer = new BtfBuilder();
        pointer.AddInt("int", 4, true);
        pointer.AddRef(Ptr, "", 99);
        var e = Assert.Throws<BtfFormatException>(() => BtfLoader.Load(pointer.Build(), "p"));
        Assert.Contains("type[2].type at 0x", e.Message);
        Assert.Contains("type id 99 is outside the 2 types", e.Message);
        Assert.Equal(24 + 16 + 8, e.Offset);

        var member = new BtfBuilder();
        member.AddStruct("s", 4, ("m", 7, 0, 0));
        Assert.Contains("type[1].member[0].type", Assert.Throws<BtfFormatException>(() => BtfLoader.Load(member.Build(), "m")).Message);

        var qualifier = new BtfBuilder();
        qualifier.AddRef(Const, "", 5);
        Assert.Contains("CONST refers to type id 5", Assert.Throws<BtfFormatException>(() => BtfLoader.Load(qualifier.Build(), "q")).Message);

        var array = new BtfBuilder();
        array.AddInt("int", 4, true);
        array.AddArray(1, 42, 3);
        Assert.Contains("index_type", Assert.Throws<BtfFormatException>(() => BtfLoader.Load(array.Build(), "a")).Message);
    }

    [Fact]
    public void Cyclic_typedefs_qualifiers_and_arrays_are_refused_without_hanging()
    {
        var watch = Stopwatch.StartNew();
        var typedefs = new BtfBuilder();
        typedefs.AddRef(Typedef, "a", 2);
        typedefs.AddRef(Typedef, "b", 1);
        Assert.Contains("cyclic", Assert.Throws<BtfFormatException>(() => BtfLoader.Load(typedefs.Build(), "t")).Message);

        var self = new BtfBuilder();
        self.AddRef(Typedef, "self", 1);
        Assert.Contains("deeper than 64", Assert.Throws<BtfFormatException>(() => BtfLoader.Load(self.Build(), "s")).Message);

        var qualifiers = new BtfBuilder();
        qualifiers.AddRef(Const, "", 2);
        qualifiers.AddRef(BtfBuilder.Volatile, "", 1);
        qualifiers.AddRef(Ptr, "", 1);
        Assert.Contains("qualifier chain", Assert.Throws<BtfFormatException>(() => BtfLoader.Load(qualifiers.Build(), "q")).Message);

        var array = new BtfBuilder();
        array.AddInt("int", 4, true);
        array.AddArray(2, 1, 4);
        Assert.Contains("cyclic", Assert.Throws<BtfFormatException>(() => BtfLoader.Load(array.Build(), "a")).Message);
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(5));
    }

    [Fact]
    public void A_struct_nested_anonymously_in_itself_does_not_hang_lookups()
    {
        // Impossible in C, possible in a hostile blob: lookups give up after a bounded number of visits.
        var b = new BtfBuilder();
        b.AddStruct("loop", 8, ("", 1, 0, 0), ("", 1, 0, 0), ("x", 2, 0, 0));
        b.AddInt("int", 4, true);
        TypeModel model = BtfLoader.Load(b.Build(), "loop");
        var watch = Stopwatch.StartNew();
        Assert.Null(model.FindStruct("loop")!.FindField("missing"));
        Assert.NotNull(model.FindStruct("loop")!.FindField("x"));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(2));
    }

    [Fact]
    public void Huge_vlen_runs_past_the_type_section()
    {
        var b = new BtfBuilder();
        b.Raw(b.Str("s"), Info(Struct, 0xFFFF), 8);
        var e = Assert.Throws<BtfFormatException>(() => BtfLoader.Load(b.Build(), "v"));
        Assert.Contains("STRUCT record of 786432 bytes (vlen 65535) runs past the end of the type section", e.Message);
        Assert.Equal(24, e.Offset);
    }

    [Fact]
    public void Unknown_kinds_and_bad_names_are_refused()
    {
        var kind = new BtfBuilder();
        kind.Raw(0, Info(0), 0);
        Assert.Contains("unknown type kind 0", Assert.Throws<BtfFormatException>(() => BtfLoader.Load(kind.Build(), "k")).Message);

        var name = new BtfBuilder();
        name.Raw(0x10000, Info(Int), 4, 32);
        Assert.Contains("outside the string section", Assert.Throws<BtfFormatException>(() => BtfLoader.Load(name.Build(), "n")).Message);

        var truncated = new BtfBuilder();
        truncated.AddInt("int", 4, true);
        byte[] blob = truncated.Build();
        BinaryPrimitives.WriteUInt32LittleEndian(blob.AsSpan(12), 12);   // type_len cuts the INT's extra word
        Assert.Contains("INT record of 16 bytes", Assert.Throws<BtfFormatException>(() => BtfLoader.Load(blob, "t")).Message);
    }

    [Fact]
    public void Limits_are_enforced_and_reasonable_values_accepted()
    {
        byte[] blob = Sample().Build();
        var exact = new ParserLimits { MaxTypes = 30, MaxTypeMembers = 7, MaxNameLength = 17, MaxBtfBytes = blob.Length, MaxTypeDepth = 2 };
        Assert.Equal(30, BtfLoader.Load(blob, "exact", exact).TypeCount);
        Assert.Equal(30, BtfLoader.Load(blob, "default", ParserLimits.Default).TypeCount);

        Assert.Contains("more than the limit of 29 types", Refused(blob, exact with { MaxTypes = 29 }));
        Assert.Contains("has 7 members, more than the limit of 6", Refused(blob, exact with { MaxTypeMembers = 6 }));
        Assert.Contains("longer than the limit of 16 bytes", Refused(blob, exact with { MaxNameLength = 16 }));
        Assert.Contains($"more than the limit of {blob.Length - 1}", Refused(blob, exact with { MaxBtfBytes = blob.Length - 1 }));
        Assert.Contains("deeper than 1", Refused(blob, exact with { MaxTypeDepth = 1 }));
    }

    private static string Refused(byte[] blob, ParserLimits limits)
        => Assert.Throws<BtfFormatException>(() => BtfLoader.Load(blob, "limits", limits)).Message;

    [Fact]
    public void Random_corruption_gives_a_model_or_a_format_error()
    {
        byte[] original = Sample().Build();
        var random = new Random(1234);
        int refused = 0;
        for (int round = 0; round < 3000; round++)
        {
            byte[] blob = (byte[])original.Clone();
            int flips = random.Next(1, 5);
            for (int i = 0; i < flips; i++)
            {
                blob[random.Next(blob.Length)] = (byte)random.Next(256);
            }
            try
            {
                TypeModel model = BtfLoader.Load(blob, "fuzz");
                foreach (TypeInfo type in model.Types)
                {
                    _ = type.Resolve();
                    _ = type.ToString();
                    _ = type.FindField("pid");
                }
                model.TryGetOffset("task", "tasks.prev", out _);
            }
            catch (BtfFormatException)
            {
                refused++;
            }
        }
        Assert.InRange(refused, 1, 2999);
    }
}
