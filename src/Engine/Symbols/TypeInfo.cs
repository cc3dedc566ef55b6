using System.Collections.ObjectModel;
using System.Text;

namespace CloudMem.Engine.Symbols;

/// <summary>What a <see cref="TypeInfo"/> describes.</summary>
public enum TypeKind
{
    /// <summary>C <c>void</c>.</summary>
    Void,
    /// <summary>Integer, char or bool.</summary>
    Int,
    /// <summary>Floating point.</summary>
    Float,
    /// <summary>Pointer; <see cref="TypeInfo.Target"/> is the pointee.</summary>
    Pointer,
    /// <summary>Array; <see cref="TypeInfo.Target"/> is the element, <see cref="TypeInfo.ArrayLength"/> the count.</summary>
    Array,
    /// <summary>Struct (or C++ class).</summary>
    Struct,
    /// <summary>Union.</summary>
    Union,
    /// <summary>Enumeration; values in <see cref="TypeInfo.EnumValues"/>.</summary>
    Enum,
    /// <summary>Typedef; <see cref="TypeInfo.Target"/> is the aliased type.</summary>
    Typedef,
    /// <summary>Function or function prototype; <see cref="TypeInfo.Target"/> is the return type when known.</summary>
    Function,
    /// <summary>Forward declaration of a struct or union whose layout the source does not hold.</summary>
    Forward,
    /// <summary>Anything else a source records (BTF variables, data sections, declaration tags).</summary>
    Other,
}

/// <summary>
/// One type of the engine's type model, from whichever loader produced it (BTF, ISF).
/// Immutable after load and safe to share between threads.
/// </summary>
/// <remarks>Qualifiers (const, volatile, restrict, BTF type tags) are not represented: a reference to
/// <c>const int</c> is a reference to <c>int</c>.</remarks>
public sealed class TypeInfo
{
    /// <summary>Longest typedef chain <see cref="Resolve"/> follows; loaders reject deeper (cyclic) chains.</summary>
    internal const int MaxResolveDepth = 256;

    private static readonly IReadOnlyList<FieldInfo> s_noFields = [];

    internal TypeInfo(int id, string name, TypeKind kind)
    {
        Id = id;
        Name = name;
        Kind = kind;
    }

    /// <summary>The source's identifier for the type (BTF type id; ordinal for ISF).</summary>
    public int Id { get; }

    /// <summary>The name; "" for anonymous types.</summary>
    public string Name { get; }

    /// <summary>What the type is.</summary>
    public TypeKind Kind { get; }

    /// <summary>Size in bytes (typedefs take their target's size; 0 for void, functions and forward declarations).</summary>
    public int Size { get; internal set; }

    /// <summary>Whether an integer or enum is signed.</summary>
    public bool IsSigned { get; internal set; }

    /// <summary>Pointee, array element, typedef target, function return type, or variable type; null when none.</summary>
    public TypeInfo? Target
    {
        get
        {
            Fill();
            return _target;
        }
        internal set => _target = value;
    }

    /// <summary>Element count of an array (0 for flexible arrays).</summary>
    public int ArrayLength { get; internal set; }

    /// <summary>Members of a struct or union in declaration (offset) order; anonymous members have the name "".</summary>
    public IReadOnlyList<FieldInfo> Fields
    {
        get
        {
            Fill();
            return _fields;
        }
        internal set => _fields = value;
    }

    /// <summary>Enumerators of an enum.</summary>
    public IReadOnlyDictionary<string, long> EnumValues
    {
        get
        {
            Fill();
            return _enumValues;
        }
        internal set => _enumValues = value;
    }

    // A type read from the profile cache gets its target, members and enumerators from its record on first use.
    private TypeInfo? _target;
    private IReadOnlyList<FieldInfo> _fields = s_noFields;
    private IReadOnlyDictionary<string, long> _enumValues = ReadOnlyDictionary<string, long>.Empty;
    private LazyTypeTable? _lazy;
    private int _lazyIndex;
    private bool _filled;

    internal bool IsFilled => Volatile.Read(ref _filled);

    internal void AttachLazy(LazyTypeTable table, int index)
    {
        _lazy = table;
        _lazyIndex = index;
    }

    internal void CompleteFill(TypeInfo? target, IReadOnlyList<FieldInfo> fields, Dictionary<string, long>? enumValues)
    {
        _target = target;
        _fields = fields.Count == 0 ? s_noFields : fields;
        if (enumValues is not null)
        {
            _enumValues = new ReadOnlyDictionary<string, long>(enumValues);
        }
        Volatile.Write(ref _filled, true);
    }

    private void Fill()
    {
        if (_lazy is not null && !Volatile.Read(ref _filled))
        {
            _lazy.Fill(this, _lazyIndex);
        }
    }

    /// <summary>True for struct and union types.</summary>
    public bool IsAggregate => Kind is TypeKind.Struct or TypeKind.Union;

    /// <summary>Follows typedefs to the real type (qualifiers are already skipped by the loaders).</summary>
    public TypeInfo Resolve()
    {
        TypeInfo type = this;
        for (int i = 0; i < MaxResolveDepth && type.Kind == TypeKind.Typedef && type.Target is not null; i++)
        {
            type = type.Target;
        }
        return type;
    }

    /// <summary>
    /// The member called <paramref name="name"/> of this struct or union (after resolving typedefs), also looking
    /// inside anonymous struct/union members, in which case the returned field's offset is relative to this type.
    /// </summary>
    /// <returns>The field, or null when the type has no such member or is not a struct or union.</returns>
    public FieldInfo? FindField(string name)
    {
        int budget = MaxFindVisits;
        return FindField(name, 0, ref budget);
    }

    /// <summary>Most anonymous members <see cref="FindField(string)"/> descends into (hostile sources can nest a
    /// struct inside itself).</summary>
    internal const int MaxFindVisits = 4096;

    private FieldInfo? FindField(string name, int depth, ref int budget)
    {
        TypeInfo type = Resolve();
        if (!type.IsAggregate || depth > MaxResolveDepth || name.Length == 0 || --budget < 0)
        {
            return null;
        }
        IReadOnlyList<FieldInfo> fields = type.Fields;
        for (int i = 0; i < fields.Count; i++)
        {
            if (string.Equals(fields[i].Name, name, StringComparison.Ordinal))
            {
                return fields[i];
            }
        }
        for (int i = 0; i < fields.Count; i++)
        {
            FieldInfo member = fields[i];
            if (member.Name.Length == 0 && member.Type.Resolve().IsAggregate)
            {
                FieldInfo? inner = member.Type.FindField(name, depth + 1, ref budget);
                if (inner is not null)
                {
                    return inner with { BitOffset = inner.BitOffset + member.BitOffset };
                }
            }
        }
        return null;
    }

    /// <summary>A C-like spelling, e.g. "struct list_head", "char[16]", "struct mm_struct *".</summary>
    public override string ToString()
    {
        var text = new StringBuilder();
        Describe(text, 0);
        return text.ToString();
    }

    private void Describe(StringBuilder text, int depth)
    {
        if (depth > 16)
        {
            text.Append("...");
            return;
        }
        switch (Kind)
        {
            case TypeKind.Pointer:
                if (Target is null)
                {
                    text.Append("void");
                }
                else
                {
                    Target.Describe(text, depth + 1);
                }
                text.Append(" *");
                break;
            case TypeKind.Array:
                if (Target is null)
                {
                    text.Append('?');
                }
                else
                {
                    Target.Describe(text, depth + 1);
                }
                text.Append('[').Append(ArrayLength).Append(']');
                break;
            case TypeKind.Struct:
                text.Append("struct ").Append(Name.Length == 0 ? "<anonymous>" : Name);
                break;
            case TypeKind.Union:
                text.Append("union ").Append(Name.Length == 0 ? "<anonymous>" : Name);
                break;
            case TypeKind.Enum:
                text.Append("enum ").Append(Name.Length == 0 ? "<anonymous>" : Name);
                break;
            case TypeKind.Forward:
                text.Append("struct ").Append(Name).Append(" (declared only)");
                break;
            case TypeKind.Function:
                text.Append(Name.Length == 0 ? "function" : Name + "()");
                break;
            case TypeKind.Void:
                text.Append("void");
                break;
            default:
                text.Append(Name.Length == 0 ? Kind.ToString() : Name);
                break;
        }
    }
}

/// <summary>A member of a struct or union.</summary>
/// <param name="Name">Member name; "" for an anonymous struct or union member.</param>
/// <param name="BitOffset">Offset from the start of the containing type, in bits.</param>
/// <param name="BitSize">Width of a bitfield in bits; 0 when the member is not a bitfield.</param>
/// <param name="Type">The member's type.</param>
public sealed record FieldInfo(string Name, long BitOffset, int BitSize, TypeInfo Type)
{
    /// <summary>Byte offset (of the byte holding the first bit, for bitfields).</summary>
    public int Offset => (int)(BitOffset / 8);

    /// <summary>True for bitfields.</summary>
    public bool IsBitfield => BitSize != 0;
}
