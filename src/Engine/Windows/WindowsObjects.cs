using CloudMem.Engine.Core;
using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows;

/// <summary>An executive object's _OBJECT_HEADER as read.</summary>
/// <param name="Address">Virtual address of the _OBJECT_HEADER.</param>
/// <param name="Body">Virtual address of the object body.</param>
/// <param name="StoredTypeIndex">TypeIndex as stored (Windows 10+: encoded with the header cookie).</param>
/// <param name="TypeIndex">The decoded index into ObTypeIndexTable.</param>
/// <param name="TypeName">Name of that object type, or null when the index is not in the table.</param>
/// <param name="InfoMask">Which optional headers precede the _OBJECT_HEADER.</param>
/// <param name="PointerCount">Reference count.</param>
public readonly record struct ObjectHeader(ulong Address, ulong Body, byte StoredTypeIndex, int TypeIndex, string? TypeName, byte InfoMask, long PointerCount);

/// <summary>
/// The object manager's view of a Windows kernel: the object types of ObTypeIndexTable, the header cookie
/// (ObHeaderCookie, Windows 10+), _OBJECT_HEADER reads with the type decoded, the optional headers located through
/// InfoMask (the ObpInfoMaskToOffset rule computed from the ISF sizes of the optional header structures) and object
/// names from _OBJECT_HEADER_NAME_INFO.
/// </summary>
/// <remarks>
/// Built once per kernel by <see cref="Open(WindowsKernel, CancellationToken)"/>; immutable and safe for concurrent readers afterwards. Reads never throw:
/// what does not read is null or false, and what looked wrong while opening is in <see cref="Notes"/>.
/// The cookie is checked against the process objects on PsActiveProcessHead: when it does not decode their headers as
/// "Process" but one other value decodes all of them, that value is used and a note says so (a smeared or
/// overwritten cookie).
/// </remarks>
public sealed class WindowsObjectManager
{
    /// <summary>Most entries read from ObTypeIndexTable (TypeIndex is one byte).</summary>
    public const int MaxObjectTypes = 256;

    /// <summary>The optional headers in InfoMask bit order (bit 0 first); those missing from a build's ISF are left out, later ones move down.</summary>
    private static readonly string[] s_optionalHeaders =
        ["CREATOR_INFO", "NAME_INFO", "HANDLE_INFO", "QUOTA_INFO", "PROCESS_INFO", "AUDIT_INFO", "EXTENDED_INFO", "HANDLE_REVOCATION_INFO", "PADDING_INFO"];

    private readonly Dictionary<int, string> _types;
    private readonly int _typeIndex, _infoMask, _pointerCount, _body, _nameInfoName, _nameBit;
    private readonly UnicodeStringLayout _unicode;
    private readonly int[] _optionalSizes;

    private WindowsObjectManager(WindowsKernel kernel, Dictionary<int, string> types, byte? storedCookie, byte? cookie, List<string> notes)
    {
        Kernel = kernel;
        _types = types;
        StoredCookie = storedCookie;
        Cookie = cookie;
        Notes = notes;
        TypeModel t = kernel.Types;
        _typeIndex = t.RequiredOffset("_OBJECT_HEADER", "TypeIndex");
        _infoMask = t.RequiredOffset("_OBJECT_HEADER", "InfoMask");
        _pointerCount = t.RequiredOffset("_OBJECT_HEADER", "PointerCount");
        _body = t.RequiredOffset("_OBJECT_HEADER", "Body");
        _nameInfoName = t.RequiredOffset("_OBJECT_HEADER_NAME_INFO", "Name");
        _unicode = UnicodeStringLayout.Of(t);
        var sizes = new List<int>();
        _nameBit = -1;
        foreach (string name in s_optionalHeaders)
        {
            if (t.TryGetSize("_OBJECT_HEADER_" + name, out int size))
            {
                if (name == "NAME_INFO")
                {
                    _nameBit = sizes.Count;
                }
                sizes.Add(size);
            }
        }
        _optionalSizes = [.. sizes];
    }

    /// <summary>The kernel.</summary>
    public WindowsKernel Kernel { get; }

    /// <summary>Object type names by index (ObTypeIndexTable).</summary>
    public IReadOnlyDictionary<int, string> Types => _types;

    /// <summary>The byte at ObHeaderCookie (null: the build has no cookie, or it does not read).</summary>
    public byte? StoredCookie { get; }

    /// <summary>The cookie used to decode type indices (differs from <see cref="StoredCookie"/> when that was found wrong).</summary>
    public byte? Cookie { get; }

    /// <summary>What was odd about the type table or the cookie.</summary>
    public IReadOnlyList<string> Notes { get; }

    /// <summary>Offset of the body in an object allocation, from the _OBJECT_HEADER.</summary>
    public int BodyOffset => _body;

    /// <summary>Sizes of the optional headers this build has, in InfoMask bit order.</summary>
    public IReadOnlyList<int> OptionalHeaderSizes => _optionalSizes;

    /// <summary>
    /// Windows 10+'s TypeIndex encoding undone: <paramref name="stored"/> ^ cookie ^ byte 1 of the header address.
    /// Without a cookie (Windows 7) the stored value is the index.
    /// </summary>
    public static int DecodeTypeIndex(ulong objectHeader, byte stored, byte? cookie)
        => cookie is byte c ? (byte)(stored ^ c ^ (byte)(objectHeader >> 8)) : stored;

    /// <summary>
    /// ObpInfoMaskToOffset computed: how far before the _OBJECT_HEADER the optional header of <paramref name="bit"/>
    /// starts (the sizes of the present headers of that bit and below), or -1 when the mask does not have it.
    /// </summary>
    public static int OptionalHeaderOffset(IReadOnlyList<int> sizes, byte infoMask, int bit)
    {
        if (bit < 0 || bit >= sizes.Count || (infoMask & (1 << bit)) == 0)
        {
            return -1;
        }
        int offset = 0;
        for (int b = 0; b <= bit; b++)
        {
            if ((infoMask & (1 << b)) != 0)
            {
                offset += sizes[b];
            }
        }
        return offset;
    }

    /// <summary>Reads ObTypeIndexTable and the cookie, and checks the cookie against the listed processes.</summary>
    /// <exception cref="KernelNotFoundException">The ISF lacks the object header layout or ObTypeIndexTable.</exception>
    public static WindowsObjectManager Open(WindowsKernel kernel, CancellationToken ct = default) => Open(kernel, null, ct);

    /// <summary>As <see cref="Open(WindowsKernel, CancellationToken)"/>, checking the cookie against <paramref name="listed"/> (the caller's walk of the process list; null: walk it here).</summary>
    public static WindowsObjectManager Open(WindowsKernel kernel, IReadOnlyList<WindowsProcess>? listed, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        TypeModel t = kernel.Types;
        AddressSpace space = kernel.Kernel;
        var notes = new List<string>();
        var types = new Dictionary<int, string>();
        if (!kernel.TryGetSymbol("ObTypeIndexTable", out ulong table))
        {
            throw new KernelNotFoundException($"{t.Source} has no ObTypeIndexTable symbol");
        }
        int nameOffset = t.RequiredOffset("_OBJECT_TYPE", "Name");
        int indexOffset = t.RequiredOffset("_OBJECT_TYPE", "Index");
        Span<byte> index = stackalloc byte[1];
        for (int i = 0; i < MaxObjectTypes; i++)
        {
            if (!space.TryReadUInt64(table + (ulong)(i * 8), out ulong type))
            {
                notes.Add($"ObTypeIndexTable entry {i} at 0x{table + (ulong)(i * 8):X} does not read; table ends there");
                break;
            }
            if (type == 0)
            {
                if (i > 1)
                {
                    break;      // the table ends at its first null entry after the reserved ones
                }
                continue;
            }
            if (!IsKernelPointer(type))
            {
                continue;       // entry 1 holds 0xBAD0B0B0
            }
            string? name = WindowsMemoryReader.UnicodeString(space, type + (ulong)nameOffset, UnicodeStringLayout.Of(t));
            if (name is null || name.Length == 0)
            {
                notes.Add($"object type {i} at 0x{type:X}: name does not read");
                continue;
            }
            if (space.Read(type + (ulong)indexOffset, index) == 1 && index[0] != i)
            {
                notes.Add($"object type {i} ({name}) says its index is {index[0]}");
            }
            types[i] = name;
        }
        if (types.Count == 0)
        {
            notes.Add($"ObTypeIndexTable at 0x{table:X} holds no readable object type: object types unknown");
        }

        byte? stored = null;
        bool hasCookie = kernel.TryGetSymbol("ObHeaderCookie", out ulong cookieVa);
        if (hasCookie)
        {
            Span<byte> b = stackalloc byte[1];
            if (space.Read(cookieVa, b) == 1)
            {
                stored = b[0];
            }
            else
            {
                space.TryTranslate(cookieVa, out _, out TranslationFault fault);
                notes.Add($"ObHeaderCookie at 0x{cookieVa:X} does not read ({fault})");
            }
        }
        byte? cookie = CheckCookie(kernel, types, hasCookie, stored, listed, notes, ct);
        return new WindowsObjectManager(kernel, types, stored, cookie, notes);
    }

    /// <summary>
    /// The listed processes' object headers must decode as "Process". Returns the cookie to use: the stored one when it
    /// does (or when nothing can be checked), else the one value that decodes every listed process's header.
    /// </summary>
    private static byte? CheckCookie(WindowsKernel kernel, Dictionary<int, string> types, bool hasCookie, byte? stored, IReadOnlyList<WindowsProcess>? listed, List<string> notes, CancellationToken ct)
    {
        int processIndex = types.FirstOrDefault(kv => kv.Value == "Process").Key;
        if (processIndex == 0)
        {
            return stored;
        }
        int body = kernel.Types.RequiredOffset("_OBJECT_HEADER", "Body");
        int typeIndex = kernel.Types.RequiredOffset("_OBJECT_HEADER", "TypeIndex");
        var headers = new List<(ulong Header, byte Stored)>();
        Span<byte> b = stackalloc byte[1];
        foreach (WindowsProcess p in (listed ?? WindowsProcesses.List(kernel, ct).Processes).Take(64))
        {
            ulong header = p.Offset - (ulong)body;
            if (kernel.Kernel.Read(header + (ulong)typeIndex, b) == 1)
            {
                headers.Add((header, b[0]));
            }
        }
        if (headers.Count == 0)
        {
            return stored;
        }
        int matching = headers.Count(h => DecodeTypeIndex(h.Header, h.Stored, stored) == processIndex);
        if (matching * 2 > headers.Count)
        {
            return stored;
        }
        if (!hasCookie)
        {
            notes.Add($"only {matching} of {headers.Count} listed processes' object headers have the Process type index {processIndex}: object types may be wrong");
            return stored;
        }
        // Which cookie would make each header a Process? Take the value most of them agree on.
        var votes = headers.GroupBy(h => (byte)(h.Stored ^ (byte)(h.Header >> 8) ^ processIndex)).OrderByDescending(g => g.Count()).First();
        string was = stored is byte s ? $"0x{s:X2}" : "unreadable";
        if (votes.Count() * 2 > headers.Count)
        {
            notes.Add($"ObHeaderCookie ({was}) decodes only {matching} of {headers.Count} listed processes' object headers as Process; " +
                      $"0x{votes.Key:X2} decodes {votes.Count()}: using 0x{votes.Key:X2}");
            return votes.Key;
        }
        notes.Add($"ObHeaderCookie ({was}) decodes only {matching} of {headers.Count} listed processes' object headers as Process, and no other cookie fits: object types may be wrong");
        return stored;
    }

    /// <summary>Reads the _OBJECT_HEADER at <paramref name="address"/> and decodes its type.</summary>
    public bool TryReadHeader(ulong address, out ObjectHeader header)
    {
        header = default;
        if (!IsKernelPointer(address))
        {
            return false;
        }
        Span<byte> bytes = stackalloc byte[_body];
        if (Kernel.Kernel.Read(address, bytes) != bytes.Length)
        {
            return false;
        }
        byte stored = bytes[_typeIndex];
        int index = DecodeTypeIndex(address, stored, Cookie);
        header = new ObjectHeader(address, address + (ulong)_body, stored, index, _types.GetValueOrDefault(index), bytes[_infoMask],
            BinaryPrimitives.ReadInt64LittleEndian(bytes[_pointerCount..]));
        return true;
    }

    /// <summary>The header of an object body.</summary>
    public bool TryReadHeaderOfBody(ulong body, out ObjectHeader header) => TryReadHeader(body - (ulong)_body, out header);

    /// <summary>Address of an optional header of the object (by InfoMask bit, in this build's order), or 0 when absent.</summary>
    public ulong OptionalHeader(in ObjectHeader header, int bit)
    {
        int offset = OptionalHeaderOffset(_optionalSizes, header.InfoMask, bit);
        return offset < 0 ? 0 : header.Address - (ulong)offset;
    }

    /// <summary>The object's name from _OBJECT_HEADER_NAME_INFO (null: no name info, or it does not read).</summary>
    public string? NameInfoName(in ObjectHeader header)
    {
        ulong nameInfo = OptionalHeader(header, _nameBit);
        return nameInfo == 0 ? null : WindowsMemoryReader.UnicodeString(Kernel.Kernel, nameInfo + (ulong)_nameInfoName, _unicode);
    }

    /// <summary>A canonical kernel-half address.</summary>
    public static bool IsKernelPointer(ulong va) => va >= 0xFFFF800000000000UL;
}
