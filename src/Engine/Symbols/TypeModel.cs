using System.Collections.ObjectModel;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Symbols;

/// <summary>
/// The engine's one type model: every type of one symbol source (kernel BTF, an ISF file), looked up by name.
/// Immutable after load; safe to share between threads.
/// </summary>
public sealed class TypeModel
{
    private readonly Dictionary<string, TypeInfo> _aggregates = new(StringComparer.Ordinal);
    private readonly Dictionary<string, TypeInfo> _named = new(StringComparer.Ordinal);

    internal TypeModel(string source, IReadOnlyList<TypeInfo> types, int typeCount, IReadOnlyDictionary<string, ulong>? symbols)
    {
        Source = source;
        Types = types;
        TypeCount = typeCount;
        Symbols = symbols ?? ReadOnlyDictionary<string, ulong>.Empty;
        foreach (TypeInfo type in types)
        {
            if (type.Name.Length == 0)
            {
                continue;
            }
            if (type.IsAggregate)
            {
                // Several definitions of one name: keep the first, unless a later one has more members.
                if (!_aggregates.TryGetValue(type.Name, out TypeInfo? known) || type.Fields.Count > known.Fields.Count)
                {
                    _aggregates[type.Name] = type;
                }
            }
            if (Rank(type.Kind) < (_named.TryGetValue(type.Name, out TypeInfo? other) ? Rank(other.Kind) : int.MaxValue))
            {
                _named[type.Name] = type;
            }
        }
        // A struct known only by its typedef name (ISF names structs after typedefs; BTF keeps the typedef).
        foreach (TypeInfo type in types)
        {
            if (type.Kind == TypeKind.Typedef && type.Name.Length > 0 && !_aggregates.ContainsKey(type.Name)
                && type.Resolve() is { IsAggregate: true } target)
            {
                _aggregates[type.Name] = target;
            }
        }
    }

    private readonly LazyTypeTable? _lazy;
    private readonly NameIndex? _lazyAggregates;
    private readonly NameIndex? _lazyNamed;

    /// <summary>A model read from the profile cache: types made on first use, names found in the cached indexes.</summary>
    internal TypeModel(string source, LazyTypeTable table, int listed, int typeCount, IReadOnlyDictionary<string, ulong>? symbols,
        NameIndex aggregates, NameIndex named)
    {
        Source = source;
        Types = new LazyTypeList(table, listed);
        TypeCount = typeCount;
        Symbols = symbols ?? ReadOnlyDictionary<string, ulong>.Empty;
        _lazy = table;
        _lazyAggregates = aggregates;
        _lazyNamed = named;
    }

    /// <summary>Where the types came from, e.g. "BTF in memory at 0x1A2B000" or "ISF linux.json.xz".</summary>
    public string Source { get; }

    /// <summary>Number of types the source defines (BTF: type records, qualifiers included; ISF: base, user and enum types).</summary>
    public int TypeCount { get; }

    /// <summary>Every distinct type object of the model (BTF qualifiers are folded into their targets).</summary>
    public IReadOnlyList<TypeInfo> Types { get; }

    /// <summary>Symbol addresses as the source gives them (ISF: unrelocated kernel addresses); empty for BTF.</summary>
    public IReadOnlyDictionary<string, ulong> Symbols { get; }

    /// <summary>The kernel banner the source was made for (an ISF's linux_banner constant_data, "Linux version ..."),
    /// or null when the source does not carry it.</summary>
    public string? KernelBanner { get; init; }

    /// <summary>The struct or union called <paramref name="name"/> (also reached through a typedef of that name);
    /// null when absent or only forward-declared.</summary>
    public TypeInfo? FindStruct(string name)
        => _lazyAggregates is null ? _aggregates.GetValueOrDefault(name) : _lazyAggregates.TryGet(name, out int index) ? _lazy!.Get(index) : null;

    /// <summary>Any named type. When a name is used by several kinds, the first of: base type (int, float, void),
    /// typedef, enum, struct or union, forward declaration, anything else.</summary>
    public TypeInfo? FindType(string name)
        => _lazyNamed is null ? _named.GetValueOrDefault(name) : _lazyNamed.TryGet(name, out int index) ? _lazy!.Get(index) : null;

    /// <summary>The offset <see cref="TryGetOffset"/> finds, or -1 when the member is absent (for layout tables whose
    /// optional members are checked before use; never for row values).</summary>
    public int OptionalOffset(string structName, string fieldPath) => TryGetOffset(structName, fieldPath, out int offset) ? offset : -1;

    /// <summary>
    /// Byte offset of a member from the start of <paramref name="structName"/>. <paramref name="fieldPath"/> is one
    /// member name ("mm") or a dotted path through embedded structs and unions ("tasks.next"); members of anonymous
    /// structs and unions are found directly. Pointers are not followed.
    /// </summary>
    /// <returns>False when the struct or any member is missing, or a path step is not an embedded struct or union.</returns>
    public bool TryGetOffset(string structName, string fieldPath, out int offset)
    {
        offset = 0;
        TypeInfo? type = FindStruct(structName);
        if (type is null || fieldPath.Length == 0)
        {
            return false;
        }
        long bits = 0;
        foreach (string part in fieldPath.Split('.'))
        {
            if (type is null)
            {
                return false;
            }
            FieldInfo? field = type.FindField(part);
            if (field is null)
            {
                return false;
            }
            bits += field.BitOffset;
            TypeInfo next = field.Type.Resolve();
            type = next.IsAggregate ? next : null;
        }
        offset = (int)(bits / 8);
        return true;
    }

    /// <summary>The member <paramref name="fieldPath"/> of <paramref name="structName"/> (see <see cref="TryGetOffset"/>).</summary>
    public FieldInfo? FindField(string structName, string fieldPath)
    {
        if (!TryGetOffset(structName, fieldPath, out _))
        {
            return null;
        }
        TypeInfo type = FindStruct(structName)!;
        FieldInfo? field = null;
        long bits = 0;
        foreach (string part in fieldPath.Split('.'))
        {
            field = type.FindField(part)!;
            bits += field.BitOffset;
            type = field.Type.Resolve();
        }
        return field! with { BitOffset = bits };
    }

    /// <summary>Size in bytes of the struct/union or named type <paramref name="name"/>.</summary>
    public bool TryGetSize(string name, out int size)
    {
        TypeInfo? type = FindStruct(name) ?? FindType(name);
        size = type?.Resolve().Size ?? 0;
        return type is not null;
    }

    /// <summary>One line for logs: source and counts.</summary>
    public override string ToString() => $"{Source}: {TypeCount} types, {Symbols.Count} symbols";

    private static int Rank(TypeKind kind) => kind switch
    {
        TypeKind.Int or TypeKind.Float or TypeKind.Void => 0,
        TypeKind.Typedef => 1,
        TypeKind.Enum => 2,
        TypeKind.Struct or TypeKind.Union => 3,
        TypeKind.Forward => 4,
        _ => 5,
    };
}

/// <summary>A symbol source (BTF blob, ISF file) that cannot be read; the message names the source, the structure
/// and where it is.</summary>
public class SymbolFormatException : FormatException
{
    /// <summary>Creates the exception.</summary>
    public SymbolFormatException(string source, FormatError error)
        : base($"{source}: {error}")
    {
        SourceName = source;
        Error = error;
    }

    /// <summary>The source (file name or memory location).</summary>
    public string SourceName { get; }

    /// <summary>The structured error.</summary>
    public FormatError Error { get; }

    /// <summary>Byte offset of the problem within the source, or -1 when it has none (ISF: see the structure path).</summary>
    public long Offset => Error.FileOffset;
}

/// <summary>A BTF blob that cannot be parsed; <see cref="SymbolFormatException.Offset"/> is the offset in the blob.</summary>
public sealed class BtfFormatException(string source, string structure, long offset, string problem)
    : SymbolFormatException(source, new FormatError("BTF", structure, offset, problem));

/// <summary>An ISF file that cannot be used (bad JSON, wrong schema or an unsupported format version).</summary>
public sealed class IsfFormatException(string source, string structure, string problem)
    : SymbolFormatException(source, new FormatError("ISF", structure, -1, problem));
