using System.IO.Compression;
using System.Text;
using System.Text.Json.Nodes;
using CloudMem.Engine.Symbols;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Symbols;

/// <summary>ISF files written in the test: schema, nested descriptors, anonymous members, bitfields, compression
/// detected by content, version refusal and limits.</summary>
public sealed class IsfLoaderTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A kernel-like ISF in the shape dwarf2json writes (fields keyed by name, anonymous unions named
    /// unnamed_field_N, typedef'd structs under their typedef name).</summary>
    private const string Sample = """
        {
          "metadata": { "format": "6.2.0", "producer": { "name": "test", "version": "1" } },
          "base_types": {
            "int": { "size": 4, "signed": true, "kind": "int", "endian": "little" },
            "unsigned int": { "size": 4, "signed": false, "kind": "int", "endian": "little" },
            "char": { "size": 1, "signed": true, "kind": "char", "endian": "little" },
            "long unsigned int": { "size": 8, "signed": false, "kind": "int", "endian": "little" },
            "pointer": { "size": 8, "signed": false, "kind": "int", "endian": "little" },
            "void": { "size": 0, "signed": false, "kind": "void", "endian": "little" }
          },
          "user_types": {
            "list_head": { "kind": "struct", "size": 16, "fields": {
              "prev": { "offset": 8, "type": { "kind": "pointer", "subtype": { "kind": "struct", "name": "list_head" } } },
              "next": { "offset": 0, "type": { "kind": "pointer", "subtype": { "kind": "struct", "name": "list_head" } } } } },
            "unnamed_1": { "kind": "union", "size": 8, "fields": {
              "a": { "offset": 0, "type": { "kind": "base", "name": "int" } },
              "b": { "offset": 0, "type": { "kind": "base", "name": "long unsigned int" } } } },
            "task": { "kind": "struct", "size": 56, "fields": {
              "pid": { "offset": 0, "type": { "kind": "base", "name": "int" } },
              "flag": { "offset": 4, "type": { "kind": "bitfield", "bit_length": 3, "bit_position": 0, "type": { "kind": "base", "name": "unsigned int" } } },
              "more": { "offset": 4, "type": { "kind": "bitfield", "bit_length": 5, "bit_position": 3, "type": { "kind": "base", "name": "unsigned int" } } },
              "unnamed_field_0": { "offset": 8, "anonymous": true, "type": { "kind": "union", "name": "unnamed_1" } },
              "tasks": { "offset": 16, "type": { "kind": "struct", "name": "list_head" } },
              "comm": { "offset": 32, "type": { "kind": "array", "count": 16, "subtype": { "kind": "base", "name": "char" } } },
              "parent": { "offset": 48, "type": { "kind": "pointer", "subtype": { "kind": "struct", "name": "task" } } },
              "state": { "offset": 40, "type": { "kind": "enum", "name": "state" } },
              "fn": { "offset": 44, "type": { "kind": "pointer", "subtype": { "kind": "function" } } },
              "opaque": { "offset": 44, "type": { "kind": "pointer", "subtype": { "kind": "struct", "name": "not_defined" } } } } },
            "spinlock_t": { "kind": "struct", "size": 4, "fields": {
              "v": { "offset": 0, "type": { "kind": "base", "name": "unsigned int" } } } }
          },
          "enums": {
            "state": { "size": 4, "base": "int", "constants": { "RUNNING": 0, "DEAD": -1 } }
          },
          "symbols": {
            "init_task": { "address": 18446744071603623424, "type": { "kind": "struct", "name": "task" } },
            "jiffies": { "address": 18446744071600000000 }
          }
        }
        """;

    /// <summary>A minimal ISF compressed with xz -9e.</summary>
    private const string MiniXz = "/Td6WFoAAATm1rRGAgAhARwAAAAQz1jM4AHLAN5dAD2IiaaUZK6e1RoGkgfy0Gg5KHC4IyqySh3Z37EHwpIV1JEQzmaVgoGtS57B7+zRZGq0viVxoGU3HHnDPXfu7V9PKfc3gLEIyvtZE3h0ORl7lsiY9oErSQsInAUmYl0Z9ywZGKZdGZSgguSsQJN7CkXCyeLnY1CFWzjVE6Z0B0cCb8ZQWsw/65vsJtUpTvnExKbWiFn/McdYEZxpN1rNoF/jiEujhuC0Ht0/C4eg3RQSPiIxVvhhDPLHkHSulqzKkLEY+LLsDNUPW0ehPx9vAzChlrPNCAlBmbtiEtqsAAAAAMugo3/zTZ+nAAH6AcwDAAD1KOF0scRn+wIAAAAABFla";

    private string Write(string name, string json) => _dir.Write(name, Encoding.UTF8.GetBytes(json));

    private string Mutated(Action<JsonNode> change)
    {
        JsonNode root = JsonNode.Parse(Sample)!;
        change(root);
        return Write("mutated.json", root.ToJsonString());
    }

    [Fact]
    public void The_kernel_banner_comes_from_linux_banner_constant_data()
    {
        Assert.Null(IsfLoader.Load(Write("linux.json", Sample)).KernelBanner);
        const string Banner = "Linux version 6.1.0-1-amd64 (x@y) #1 SMP";
        string withBanner = Mutated(root => root["symbols"]!["linux_banner"] = new JsonObject
        {
            ["address"] = 18446744071597070592UL,
            ["constant_data"] = Convert.ToBase64String(Encoding.UTF8.GetBytes(Banner + "\n\0junk")),
        });
        Assert.Equal(Banner + "\n", IsfLoader.Load(withBanner).KernelBanner);
        string broken = Mutated(root => root["symbols"]!["linux_banner"] = new JsonObject { ["address"] = 1, ["constant_data"] = "not base64!" });
        var e = Assert.Throws<IsfFormatException>(() => IsfLoader.Load(broken));
        Assert.Contains("symbols.linux_banner.constant_data", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Sample_loads_into_the_model()
    {
        TypeModel model = IsfLoader.Load(Write("linux.json", Sample));
        Assert.Equal("ISF linux.json", model.Source);
        Assert.Equal(6 + 4 + 1, model.TypeCount);
        Assert.Equal(18446744071603623424UL, model.Symbols["init_task"]);
        Assert.Equal(2, model.Symbols.Count);

        TypeInfo task = model.FindStruct("task")!;
        Assert.Equal(56, task.Size);
        Assert.Equal(["pid", "flag", "more", "", "tasks", "comm", "state", "fn", "opaque", "parent"], task.Fields.Select(f => f.Name));
        Assert.Equal((35L, 5), (task.FindField("more")!.BitOffset, task.FindField("more")!.BitSize));
        Assert.Equal(8, task.FindField("b")!.Offset);
        Assert.True(model.TryGetOffset("task", "tasks.prev", out int prev) && prev == 24);
        TypeInfo comm = task.FindField("comm")!.Type;
        Assert.Equal((TypeKind.Array, 16, 16), (comm.Kind, comm.ArrayLength, comm.Size));
        TypeInfo parent = task.FindField("parent")!.Type;
        Assert.Equal((TypeKind.Pointer, 8), (parent.Kind, parent.Size));
        Assert.Same(task, parent.Target);
        Assert.Equal(TypeKind.Function, task.FindField("fn")!.Type.Target!.Kind);
        Assert.Equal(TypeKind.Forward, task.FindField("opaque")!.Type.Target!.Kind);
        Assert.Null(model.FindStruct("not_defined"));
        TypeInfo state = task.FindField("state")!.Type;
        Assert.Equal((TypeKind.Enum, true, -1L), (state.Kind, state.IsSigned, state.EnumValues["DEAD"]));
        Assert.Equal(TypeKind.Void, model.FindType("void")!.Kind);
        Assert.NotNull(model.FindStruct("spinlock_t"));
        Assert.True(model.TryGetSize("task", out int size) && size == 56);
    }

    [Fact]
    public void Compression_is_recognised_by_content_not_name()
    {
        using (var file = File.Create(_dir.File("gzipped.json")))
        using (var gzip = new GZipStream(file, CompressionLevel.Fastest))
        {
            gzip.Write(Encoding.UTF8.GetBytes(Sample));
        }
        Assert.Equal(56, IsfLoader.Load(_dir.File("gzipped.json")).FindStruct("task")!.Size);

        string xz = _dir.Write("mini.isf", Convert.FromBase64String(MiniXz));
        TypeModel mini = IsfLoader.Load(xz);
        Assert.True(mini.TryGetOffset("pair", "b", out int b) && b == 4);
        Assert.Equal(18446744071603623424UL, mini.Symbols["init_task"]);

        byte[] broken = Convert.FromBase64String(MiniXz)[..100];
        var e = Assert.Throws<IsfFormatException>(() => IsfLoader.Load(_dir.Write("broken.json.xz", broken)));
        Assert.StartsWith("ISF broken.json.xz: ISF compression", e.Message);
    }

    [Theory]
    [InlineData("5.0.0")]
    [InlineData("7.0.0")]
    [InlineData("10.1")]
    public void Other_major_versions_are_refused(string version)
    {
        string path = Mutated(root => root["metadata"]!["format"] = version);
        var e = Assert.Throws<IsfFormatException>(() => IsfLoader.Load(path));
        Assert.Contains($"ISF format version {version} is not supported: this reader accepts major version 6", e.Message);
        Assert.Contains("metadata.format", e.Message);
    }

    [Fact]
    public void Minor_versions_of_6_are_accepted()
    {
        Assert.NotNull(IsfLoader.Load(Mutated(root => root["metadata"]!["format"] = "6.0.0")).FindStruct("task"));
        Assert.NotNull(IsfLoader.Load(Mutated(root => root["metadata"]!["format"] = "6.9")).FindStruct("task"));
    }

    public static TheoryData<string, string> SchemaErrors => new()
    {
        { "no metadata", "metadata: missing" },
        { "format not a version", "'six' is not a version number" },
        { "no user_types", "user_types: missing" },
        { "symbols is an array", "symbols: expected Object, found Array" },
        { "field without offset", "user_types.task.fields.pid.offset: missing" },
        { "negative size", "user_types.task.size: -1 is not a size or count" },
        { "unknown base type", "user_types.task.fields.pid.type.name: base type 'long long' is not in base_types" },
        { "unknown enum", "enum 'nope' is not in enums" },
        { "unknown descriptor kind", "unknown type descriptor kind 'tuple'" },
        { "unknown user kind", "user_types.task.kind: unknown user type kind 'interface'" },
        { "address not a number", "symbols.jiffies.address: expected Number, found String" },
        { "nested bitfield", "a bitfield descriptor may only describe a struct member" },
    };

    [Theory]
    [MemberData(nameof(SchemaErrors))]
    public void Schema_errors_name_the_json_path(string name, string expected)
    {
        string path = Mutated(root =>
        {
            JsonNode task = root["user_types"]!["task"]!;
            switch (name)
            {
                case "no metadata": root.AsObject().Remove("metadata"); break;
                case "format not a version": root["metadata"]!["format"] = "six"; break;
                case "no user_types": root.AsObject().Remove("user_types"); break;
                case "symbols is an array": root["symbols"] = new JsonArray(); break;
                case "field without offset": task["fields"]!["pid"]!.AsObject().Remove("offset"); break;
                case "negative size": task["size"] = -1; break;
                case "unknown base type": task["fields"]!["pid"]!["type"]!["name"] = "long long"; break;
                case "unknown enum": task["fields"]!["state"]!["type"]!["name"] = "nope"; break;
                case "unknown descriptor kind": task["fields"]!["pid"]!["type"]!["kind"] = "tuple"; break;
                case "unknown user kind": task["kind"] = "interface"; break;
                case "address not a number": root["symbols"]!["jiffies"]!["address"] = "0x10"; break;
                case "nested bitfield":
                    task["fields"]!["pid"]!["type"] = JsonNode.Parse("""{ "kind": "pointer", "subtype": { "kind": "bitfield", "bit_length": 1, "bit_position": 0, "type": { "kind": "base", "name": "int" } } }""");
                    break;
            }
        });
        var e = Assert.Throws<IsfFormatException>(() => IsfLoader.Load(path));
        Assert.Contains(expected, e.Message);
        Assert.StartsWith("ISF mutated.json: ISF ", e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void Not_json_and_not_an_object_are_refused()
    {
        Assert.Contains("not valid JSON", Assert.Throws<IsfFormatException>(() => IsfLoader.Load(Write("a.json", "{\"metadata\": "))).Message);
        Assert.Contains("not a JSON object", Assert.Throws<IsfFormatException>(() => IsfLoader.Load(Write("b.json", "[1, 2]"))).Message);
        Assert.Contains("not valid JSON", Assert.Throws<IsfFormatException>(() => IsfLoader.Load(_dir.Write("c.json", [0x1F, 0x8B, 8, 0]))).Message
            + Assert.Throws<IsfFormatException>(() => IsfLoader.Load(Write("d.json", ""))).Message);
    }

    [Fact]
    public void Limits_are_enforced_and_reasonable_values_accepted()
    {
        string path = Write("linux.json", Sample);
        var exact = new ParserLimits { MaxTypes = 11, MaxTypeMembers = 10, MaxSymbols = 2, MaxTypeDepth = 2, MaxIsfBytes = Encoding.UTF8.GetByteCount(Sample), MaxNameLength = 17 };
        Assert.Equal(11, IsfLoader.Load(path, exact).TypeCount);
        Assert.Contains("more than the limit of 10 types", Refused(path, exact with { MaxTypes = 10 }));
        Assert.Contains("more than the limit of 9 fields", Refused(path, exact with { MaxTypeMembers = 9 }));
        Assert.Contains("more than the limit of 1 symbols", Refused(path, exact with { MaxSymbols = 1 }));
        Assert.Contains("nested deeper than 1", Refused(path, exact with { MaxTypeDepth = 1 }));
        Assert.Contains("bytes of JSON", Refused(path, exact with { MaxIsfBytes = 100 }));
        Assert.Contains("name longer than the limit of 16", Refused(path, exact with { MaxNameLength = 16 }));
    }

    private static string Refused(string path, ParserLimits limits) => Assert.Throws<IsfFormatException>(() => IsfLoader.Load(path, limits)).Message;
}
