using System.IO.Compression;
using System.Text.Json;
using CloudMem.VmStateParsers;
using SharpCompress.Compressors.Xz;

namespace CloudMem.Engine.Symbols;

/// <summary>
/// Loads a Volatility 3 intermediate symbol format (ISF) file (JSON; xz- or gzip-compressed, recognised by
/// content) into a <see cref="TypeModel"/>: base_types, user_types, enums and symbols.
/// </summary>
/// <remarks>The schema is checked as the file is read and the format version must have major version
/// <see cref="SupportedMajorVersion"/>. Symbol addresses are kept as written (unrelocated).</remarks>
public static class IsfLoader
{
    /// <summary>The ISF major version this reader understands (Volatility 3 writes 6.x).</summary>
    public const int SupportedMajorVersion = 6;

    private static ReadOnlySpan<byte> XzMagic => [0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00];

    /// <summary>Reads an ISF file.</summary>
    /// <exception cref="IsfFormatException">Not JSON, not ISF, an unsupported version, or a schema error
    /// (the message names the JSON path).</exception>
    /// <exception cref="IOException">The file cannot be read.</exception>
    public static TypeModel Load(string path) => Load(path, null);

    /// <summary>Reads an ISF file with explicit limits.</summary>
    public static TypeModel Load(string path, ParserLimits? limits)
    {
        limits ??= ParserLimits.Default;
        string source = $"ISF {Path.GetFileName(path)}";
        ReadOnlyMemory<byte> json = ReadDecompressed(path, source, limits);
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(json, new JsonDocumentOptions { MaxDepth = 256 });
        }
        catch (JsonException e)
        {
            throw new IsfFormatException(source, "document", $"not valid JSON: {e.Message}");
        }
        using (document)
        {
            return new IsfBuilder(source, limits).Build(document.RootElement);
        }
    }

    private static ReadOnlyMemory<byte> ReadDecompressed(string path, string source, ParserLimits limits)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read);
        Span<byte> head = stackalloc byte[6];
        int got = file.ReadAtLeast(head, head.Length, throwOnEndOfStream: false);
        file.Position = 0;
        try
        {
            if (got == head.Length && head.SequenceEqual(XzMagic))
            {
                using var xz = new XZStream(file);
                return ReadBounded(xz, source, limits);
            }
            if (got >= 2 && head[0] == 0x1F && head[1] == 0x8B)
            {
                using var gzip = new GZipStream(file, CompressionMode.Decompress);
                return ReadBounded(gzip, source, limits);
            }
        }
        catch (Exception e) when (e is not IsfFormatException and not OperationCanceledException and not OutOfMemoryException)
        {
            throw new IsfFormatException(source, "compression", $"cannot decompress: {e.Message}");
        }
        return ReadBounded(file, source, limits);
    }

    private static ReadOnlyMemory<byte> ReadBounded(Stream stream, string source, ParserLimits limits)
    {
        var buffer = new MemoryStream();
        byte[] chunk = new byte[1 << 16];
        int read;
        while ((read = stream.Read(chunk, 0, chunk.Length)) > 0)
        {
            if (buffer.Length + read > limits.MaxIsfBytes)
            {
                throw new IsfFormatException(source, "document", $"more than the limit of {limits.MaxIsfBytes} bytes of JSON");
            }
            buffer.Write(chunk, 0, read);
        }
        return buffer.GetBuffer().AsMemory(0, (int)buffer.Length);   // no second copy of a large document
    }
}

/// <summary>Turns the JSON of one ISF file into types, checking the schema on the way.</summary>
internal sealed class IsfBuilder(string source, ParserLimits limits)
{
    private readonly Dictionary<string, TypeInfo> _base = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TypeInfo> _user = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TypeInfo> _enums = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TypeInfo> _forwards = new(StringComparer.Ordinal);
    private readonly List<TypeInfo> _types = [];
    private TypeInfo? _function;
    private TypeInfo? _void;
    private int _pointerSize = 8;

    private IsfFormatException Fail(string path, string problem) => new(source, path, problem);

    public TypeModel Build(JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            throw Fail("document", "the top level is not a JSON object");
        }
        CheckVersion(root);
        JsonElement baseTypes = Member(root, "base_types", "", JsonValueKind.Object);
        JsonElement userTypes = Member(root, "user_types", "", JsonValueKind.Object);
        JsonElement enums = Member(root, "enums", "", JsonValueKind.Object);
        JsonElement symbols = Member(root, "symbols", "", JsonValueKind.Object);

        int count = 0;
        foreach (JsonProperty property in baseTypes.EnumerateObject())
        {
            CountType(ref count, "base_types");
            string path = $"base_types.{property.Name}";
            JsonElement value = Object(property.Value, path);
            int size = Int(value, "size", path);
            string kind = String(value, "kind", path);
            TypeKind typeKind = kind switch
            {
                "int" or "char" or "bool" => TypeKind.Int,
                "float" => TypeKind.Float,
                "void" => TypeKind.Void,
                _ => throw Fail(path + ".kind", $"unknown base type kind '{kind}'"),
            };
            var type = Add(new TypeInfo(_types.Count, Name(property.Name, path), typeKind));
            type.Size = size;
            type.IsSigned = value.TryGetProperty("signed", out JsonElement signed) && signed.ValueKind == JsonValueKind.True;
            _base[property.Name] = type;
            if (property.Name == "pointer" && size is 4 or 8)
            {
                _pointerSize = size;
            }
        }
        _void = _base.GetValueOrDefault("void") ?? Add(new TypeInfo(_types.Count, "void", TypeKind.Void));

        foreach (JsonProperty property in enums.EnumerateObject())
        {
            CountType(ref count, "enums");
            string path = $"enums.{property.Name}";
            JsonElement value = Object(property.Value, path);
            var type = Add(new TypeInfo(_types.Count, Name(property.Name, path), TypeKind.Enum));
            type.Size = Int(value, "size", path);
            JsonElement constants = Member(value, "constants", path, JsonValueKind.Object);
            var values = new Dictionary<string, long>(StringComparer.Ordinal);
            foreach (JsonProperty constant in constants.EnumerateObject())
            {
                if (values.Count >= limits.MaxTypeMembers)
                {
                    throw Fail(path + ".constants", $"more than the limit of {limits.MaxTypeMembers} constants");
                }
                values.TryAdd(constant.Name, Long(constant.Value, $"{path}.constants.{constant.Name}"));
            }
            type.EnumValues = values;
            type.IsSigned = value.TryGetProperty("base", out JsonElement baseName) && baseName.ValueKind == JsonValueKind.String
                && _base.TryGetValue(baseName.GetString()!, out TypeInfo? underlying) && underlying.IsSigned;
            _enums[property.Name] = type;
        }

        // User types: shells first (sizes are declared), so members can refer to any of them.
        foreach (JsonProperty property in userTypes.EnumerateObject())
        {
            CountType(ref count, "user_types");
            string path = $"user_types.{property.Name}";
            JsonElement value = Object(property.Value, path);
            string kind = String(value, "kind", path);
            TypeKind typeKind = kind switch
            {
                "struct" or "class" => TypeKind.Struct,
                "union" => TypeKind.Union,
                _ => throw Fail(path + ".kind", $"unknown user type kind '{kind}'"),
            };
            var type = Add(new TypeInfo(_types.Count, Name(property.Name, path), typeKind));
            type.Size = Int(value, "size", path);
            _user[property.Name] = type;
        }
        foreach (JsonProperty property in userTypes.EnumerateObject())
        {
            string path = $"user_types.{property.Name}";
            JsonElement fields = Member(property.Value, "fields", path, JsonValueKind.Object);
            var list = new List<FieldInfo>();
            foreach (JsonProperty field in fields.EnumerateObject())
            {
                if (list.Count >= limits.MaxTypeMembers)
                {
                    throw Fail(path + ".fields", $"more than the limit of {limits.MaxTypeMembers} fields");
                }
                string fieldPath = $"{path}.fields.{field.Name}";
                JsonElement value = Object(field.Value, fieldPath);
                long offset = Long(Member(value, "offset", fieldPath, JsonValueKind.Number), fieldPath + ".offset");
                if (offset < 0 || offset > int.MaxValue)
                {
                    throw Fail(fieldPath + ".offset", $"offset {offset} is out of range");
                }
                bool anonymous = value.TryGetProperty("anonymous", out JsonElement flag) && flag.ValueKind == JsonValueKind.True;
                JsonElement descriptor = Member(value, "type", fieldPath, JsonValueKind.Object);
                long bitOffset = offset * 8;
                int bitSize = 0;
                if (descriptor.TryGetProperty("kind", out JsonElement k) && k.ValueKind == JsonValueKind.String && k.GetString() == "bitfield")
                {
                    bitSize = Int(descriptor, "bit_length", fieldPath + ".type");
                    bitOffset += Int(descriptor, "bit_position", fieldPath + ".type");
                    descriptor = Member(descriptor, "type", fieldPath + ".type", JsonValueKind.Object);
                }
                TypeInfo fieldType = Describe(descriptor, fieldPath + ".type", 0);
                list.Add(new FieldInfo(anonymous ? "" : Name(field.Name, fieldPath), bitOffset, bitSize, fieldType));
            }
            // JSON objects have no order: declaration order is offset order (stable for union members).
            _user[property.Name].Fields = [.. list.OrderBy(f => f.BitOffset)];
        }

        var addresses = new Dictionary<string, ulong>(StringComparer.Ordinal);
        string? banner = null;
        foreach (JsonProperty property in symbols.EnumerateObject())
        {
            if (addresses.Count >= limits.MaxSymbols)
            {
                throw Fail("symbols", $"more than the limit of {limits.MaxSymbols} symbols");
            }
            string path = $"symbols.{property.Name}";
            JsonElement value = Object(property.Value, path);
            JsonElement address = Member(value, "address", path, JsonValueKind.Number);
            ulong pa = address.TryGetUInt64(out ulong unsigned) ? unsigned
                : address.TryGetInt64(out long signed) ? unchecked((ulong)signed)
                : throw Fail(path + ".address", "not a 64-bit integer");
            addresses[Name(property.Name, path)] = pa;
            if (property.Name == "linux_banner")
            {
                banner = ConstantText(value, path);
            }
        }
        _types.AddRange(_forwards.Values);
        return new TypeModel(source, _types, count, addresses) { KernelBanner = banner };
    }

    /// <summary>A symbol's constant_data (base64, dwarf2json writes it for linux_banner) as text up to its first NUL,
    /// or null when absent.</summary>
    private string? ConstantText(JsonElement symbol, string path)
    {
        if (!symbol.TryGetProperty("constant_data", out JsonElement data) || data.ValueKind != JsonValueKind.String)
        {
            return null;
        }
        byte[] bytes;
        try
        {
            bytes = data.GetBytesFromBase64();
        }
        catch (FormatException)
        {
            throw Fail(path + ".constant_data", "not base64");
        }
        int nul = Array.IndexOf(bytes, (byte)0);
        return System.Text.Encoding.UTF8.GetString(bytes, 0, nul >= 0 ? nul : bytes.Length);
    }

    private void CheckVersion(JsonElement root)
    {
        JsonElement metadata = Member(root, "metadata", "", JsonValueKind.Object);
        string format = String(metadata, "format", "metadata");
        string[] parts = format.Split('.');
        if (parts.Length is < 2 or > 3 || !parts.All(p => p.Length > 0 && p.All(char.IsAsciiDigit)) || !int.TryParse(parts[0], out int major))
        {
            throw Fail("metadata.format", $"'{format}' is not a version number");
        }
        if (major != IsfLoader.SupportedMajorVersion)
        {
            throw Fail("metadata.format", $"ISF format version {format} is not supported: this reader accepts major version {IsfLoader.SupportedMajorVersion} (6.x)");
        }
    }

    /// <summary>A type from a descriptor ({kind: base|pointer|array|struct|union|class|enum|function, ...}).</summary>
    private TypeInfo Describe(JsonElement descriptor, string path, int depth)
    {
        if (depth >= limits.MaxTypeDepth)
        {
            throw Fail(path, $"type descriptors nested deeper than {limits.MaxTypeDepth}");
        }
        string kind = String(descriptor, "kind", path);
        switch (kind)
        {
            case "base":
                string baseName = String(descriptor, "name", path);
                return _base.TryGetValue(baseName, out TypeInfo? baseType) ? baseType
                    : throw Fail(path + ".name", $"base type '{baseName}' is not in base_types");
            case "struct" or "union" or "class":
                string name = String(descriptor, "name", path);
                return _user.TryGetValue(name, out TypeInfo? user) ? user : Forward(name, path);
            case "enum":
                string enumName = String(descriptor, "name", path);
                return _enums.TryGetValue(enumName, out TypeInfo? enumType) ? enumType
                    : throw Fail(path + ".name", $"enum '{enumName}' is not in enums");
            case "pointer":
                var pointer = Add(new TypeInfo(_types.Count, "", TypeKind.Pointer));
                pointer.Size = _pointerSize;
                pointer.Target = Describe(Member(descriptor, "subtype", path, JsonValueKind.Object), path + ".subtype", depth + 1);
                return pointer;
            case "array":
                var array = Add(new TypeInfo(_types.Count, "", TypeKind.Array));
                int count = Int(descriptor, "count", path);
                TypeInfo element = Describe(Member(descriptor, "subtype", path, JsonValueKind.Object), path + ".subtype", depth + 1);
                long size = (long)count * element.Size;
                if (size > int.MaxValue)
                {
                    throw Fail(path, $"array of {count} elements of {element.Size} bytes is too large");
                }
                array.ArrayLength = count;
                array.Target = element;
                array.Size = (int)size;
                return array;
            case "function":
                return _function ??= Add(new TypeInfo(_types.Count, "", TypeKind.Function));
            case "bitfield":
                throw Fail(path, "a bitfield descriptor may only describe a struct member");
            default:
                throw Fail(path + ".kind", $"unknown type descriptor kind '{kind}'");
        }
    }

    private TypeInfo Forward(string name, string path)
    {
        if (!_forwards.TryGetValue(name, out TypeInfo? forward))
        {
            forward = new TypeInfo(-1, Name(name, path), TypeKind.Forward);
            _forwards[name] = forward;
        }
        return forward;
    }

    private TypeInfo Add(TypeInfo type)
    {
        _types.Add(type);
        return type;
    }

    private void CountType(ref int count, string section)
    {
        if (++count > limits.MaxTypes)
        {
            throw Fail(section, $"more than the limit of {limits.MaxTypes} types");
        }
    }

    private string Name(string name, string path)
        => name.Length <= limits.MaxNameLength ? name : throw Fail(path, $"name longer than the limit of {limits.MaxNameLength}");

    private JsonElement Object(JsonElement value, string path)
        => value.ValueKind == JsonValueKind.Object ? value : throw Fail(path, $"expected an object, found {value.ValueKind}");

    private JsonElement Member(JsonElement value, string name, string path, JsonValueKind kind)
    {
        string where = path.Length == 0 ? name : $"{path}.{name}";
        if (value.ValueKind != JsonValueKind.Object || !value.TryGetProperty(name, out JsonElement member))
        {
            throw Fail(where, "missing");
        }
        return member.ValueKind == kind ? member : throw Fail(where, $"expected {kind}, found {member.ValueKind}");
    }

    private string String(JsonElement value, string name, string path) => Member(value, name, path, JsonValueKind.String).GetString()!;

    private int Int(JsonElement value, string name, string path)
    {
        JsonElement number = Member(value, name, path, JsonValueKind.Number);
        return number.TryGetInt32(out int result) && result >= 0 ? result : throw Fail($"{path}.{name}", $"{number.GetRawText()} is not a size or count");
    }

    private long Long(JsonElement value, string path)
    {
        if (value.ValueKind != JsonValueKind.Number)
        {
            throw Fail(path, $"expected a number, found {value.ValueKind}");
        }
        return value.TryGetInt64(out long signed) ? signed
            : value.TryGetUInt64(out ulong unsigned) ? unchecked((long)unsigned)
            : throw Fail(path, $"{value.GetRawText()} is not a 64-bit integer");
    }
}
