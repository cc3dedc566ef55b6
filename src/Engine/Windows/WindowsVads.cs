using CloudMem.Engine.Core;
using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows;

/// <summary>How a VAD's memory is backed.</summary>
public enum VadKind
{
    /// <summary>An image section view (VadType VadImageMap): a mapped PE file.</summary>
    Image,

    /// <summary>Private memory (heap, stack, PEB, VirtualAlloc).</summary>
    Private,

    /// <summary>A view of a data-file or pagefile-backed section.</summary>
    Mapped,
}

/// <summary>One virtual address descriptor of a process, decoded.</summary>
/// <param name="Node">Kernel address of the _MMVAD(_SHORT).</param>
/// <param name="Start">First byte of the range.</param>
/// <param name="End">Last byte of the range (inclusive, as Windows and Volatility show it).</param>
/// <param name="Tag">Pool tag before the node ('VadS', 'Vad ', 'VadF'...), or null when it does not read as text.</param>
/// <param name="ProtectionIndex">_MMVAD_FLAGS.Protection: the MM protection index (0..31).</param>
/// <param name="PrivateMemory">_MMVAD_FLAGS.PrivateMemory.</param>
/// <param name="VadType">_MMVAD_FLAGS.VadType (2 = VadImageMap).</param>
/// <param name="CommitCharge">Pages charged to the VAD.</param>
/// <param name="Parent">The parent node (low flag bits cleared; the table sentinel for the root on Windows 7, 0 on 8+).</param>
/// <param name="FileName">_FILE_OBJECT.FileName through Subsection -> ControlArea -> FilePointer, for mapped and image VADs; null otherwise or when unreadable.</param>
public sealed record WindowsVad(ulong Node, ulong Start, ulong End, string? Tag, int ProtectionIndex, bool PrivateMemory, int VadType,
    ulong CommitCharge, ulong Parent, string? FileName)
{
    /// <summary>_MMVAD_FLAGS.VadType of an image view.</summary>
    public const int VadImageMap = 2;

    /// <summary>How the memory is backed.</summary>
    public VadKind Kind => VadType == VadImageMap ? VadKind.Image : PrivateMemory ? VadKind.Private : VadKind.Mapped;

    /// <summary>PAGE_* names of the protection.</summary>
    public string Protection => WindowsProtection.Name(ProtectionIndex);

    /// <summary>Whether code may run in the range.</summary>
    public bool Executable => WindowsProtection.IsExecutable(ProtectionIndex);

    /// <summary>Whether the range may be written (including copy-on-write).</summary>
    public bool Writable => WindowsProtection.IsWritable(ProtectionIndex);

    /// <summary>Bytes in the range.</summary>
    public ulong Size => End - Start + 1;

    /// <summary>Whether <paramref name="va"/> is in the range.</summary>
    public bool Contains(ulong va) => va >= Start && va <= End;
}

/// <summary>
/// MM protection indices (_MMVAD_FLAGS.Protection) as PAGE_* values: the low three bits pick the access, bits 3-4 add
/// PAGE_NOCACHE (1), PAGE_GUARD (2) or PAGE_WRITECOMBINE (3); index 8, 16 and 24 are PAGE_NOACCESS. This is the
/// kernel's MmProtectToValue table, which is the same in every Windows version.
/// </summary>
public static class WindowsProtection
{
    private static readonly string[] s_access =
    [
        "PAGE_NOACCESS", "PAGE_READONLY", "PAGE_EXECUTE", "PAGE_EXECUTE_READ",
        "PAGE_READWRITE", "PAGE_WRITECOPY", "PAGE_EXECUTE_READWRITE", "PAGE_EXECUTE_WRITECOPY",
    ];

    private static readonly string?[] s_modifier = [null, "PAGE_NOCACHE", "PAGE_GUARD", "PAGE_WRITECOMBINE"];

    /// <summary>The PAGE_* names (access, then the modifier, joined with '|').</summary>
    public static string Name(int index)
    {
        if (index is < 0 or > 31)
        {
            return $"(invalid protection {index})";
        }
        int access = index & 7;
        string? modifier = s_modifier[index >> 3];
        return access == 0 || modifier is null ? s_access[access] : $"{s_access[access]}|{modifier}";
    }

    /// <summary>PAGE_EXECUTE, _READ, _READWRITE or _WRITECOPY.</summary>
    public static bool IsExecutable(int index) => index is >= 0 and <= 31 && (index & 7) is 2 or 3 or 6 or 7;

    /// <summary>PAGE_READWRITE, _WRITECOPY, _EXECUTE_READWRITE or _EXECUTE_WRITECOPY.</summary>
    public static bool IsWritable(int index) => index is >= 0 and <= 31 && (index & 7) is 4 or 5 or 6 or 7;
}

/// <summary>
/// Walks a process's VAD tree: Windows 8+ _EPROCESS.VadRoot (_RTL_AVL_TREE, nodes linked by VadNode Left/Right) or
/// Windows 7's _MM_AVL_TABLE (the tree under BalancedRoot.RightChild, nodes linked by LeftChild/RightChild). All offsets
/// and bitfields come from the kernel's ISF. The walk is in address order, bounded in depth and count, and stops at
/// cycles and bad pointers with a note (the rest of the tree is still walked).
/// </summary>
public sealed class WindowsVads
{
    private const ulong UserEnd = 0x0000_8000_0000_0000;

    private readonly WindowsKernel _kernel;
    private readonly bool _win7;
    private readonly int _vadRoot, _left, _right, _parent;
    private readonly FieldInfo _startVpn, _endVpn;
    private readonly FieldInfo? _startHigh, _endHigh, _commitHigh;
    private readonly FieldInfo _protection, _private, _vadType, _commit;
    private readonly int _subsection, _controlArea, _filePointer, _fileName;
    private readonly UnicodeStringLayout _unicode;
    private readonly int _poolHeaderSize, _poolTag;

    private WindowsVads(WindowsKernel kernel)
    {
        _kernel = kernel;
        TypeModel t = kernel.Types;
        _win7 = !t.TryGetOffset("_MMVAD_SHORT", "VadNode", out _);
        if (_win7)
        {
            _vadRoot = t.RequiredOffset("_EPROCESS", "VadRoot") + t.RequiredOffset("_MM_AVL_TABLE", "BalancedRoot") + t.RequiredOffset("_MMADDRESS_NODE", "RightChild");
            _left = t.RequiredOffset("_MMVAD_SHORT", "LeftChild");
            _right = t.RequiredOffset("_MMVAD_SHORT", "RightChild");
            _parent = t.RequiredOffset("_MMVAD_SHORT", "u1.Parent");
        }
        else
        {
            _vadRoot = t.RequiredOffset("_EPROCESS", "VadRoot") + t.RequiredOffset("_RTL_AVL_TREE", "Root");
            _left = t.RequiredOffset("_MMVAD_SHORT", "VadNode.Left");
            _right = t.RequiredOffset("_MMVAD_SHORT", "VadNode.Right");
            _parent = t.RequiredOffset("_MMVAD_SHORT", "VadNode.ParentValue");
        }
        _startVpn = t.RequiredField("_MMVAD_SHORT", "StartingVpn");
        _endVpn = t.RequiredField("_MMVAD_SHORT", "EndingVpn");
        _startHigh = t.FindField("_MMVAD_SHORT", "StartingVpnHigh");
        _endHigh = t.FindField("_MMVAD_SHORT", "EndingVpnHigh");
        _commitHigh = t.FindField("_MMVAD_SHORT", "CommitChargeHigh");
        _protection = t.RequiredField("_MMVAD_SHORT", "u.VadFlags.Protection");
        _private = t.RequiredField("_MMVAD_SHORT", "u.VadFlags.PrivateMemory");
        _vadType = t.RequiredField("_MMVAD_SHORT", "u.VadFlags.VadType");
        _commit = t.FindField("_MMVAD_SHORT", "u1.VadFlags1.CommitCharge") ?? t.RequiredField("_MMVAD_SHORT", "u.VadFlags.CommitCharge");
        _subsection = t.RequiredOffset("_MMVAD", "Subsection");
        _controlArea = t.RequiredOffset("_SUBSECTION", "ControlArea");
        _filePointer = t.RequiredOffset("_CONTROL_AREA", "FilePointer");
        _fileName = t.RequiredOffset("_FILE_OBJECT", "FileName");
        _unicode = UnicodeStringLayout.Of(t);
        _poolHeaderSize = t.TryGetSize("_POOL_HEADER", out int ph) ? ph : 16;
        _poolTag = t.TryGetOffset("_POOL_HEADER", "PoolTag", out int tag) ? tag : 4;
        NodeSize = t.RequiredSize("_MMVAD_SHORT");
    }

    /// <summary>Bytes of an _MMVAD_SHORT (what is read of every node).</summary>
    public int NodeSize { get; }

    /// <summary>The VAD layouts of <paramref name="kernel"/>'s ISF.</summary>
    /// <exception cref="KernelNotFoundException">The ISF lacks a VAD structure or field.</exception>
    public static WindowsVads For(WindowsKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        return new WindowsVads(kernel);
    }

    /// <summary>
    /// The VADs of the process whose _EPROCESS is at <paramref name="eprocess"/>, in address order. Notes say where the
    /// walk left a subtree (unreadable node, non-canonical or user-space pointer, a node seen before, too deep, too many).
    /// </summary>
    public (List<WindowsVad> Vads, List<string> Notes) List(ulong eprocess, long pid, CancellationToken ct = default)
    {
        var vads = new List<WindowsVad>();
        var notes = new List<string>();
        AddressSpace k = _kernel.Kernel;
        if (!k.TryReadUInt64(eprocess + (ulong)_vadRoot, out ulong root))
        {
            notes.Add($"pid {pid}: VadRoot at 0x{eprocess + (ulong)_vadRoot:X} does not read");
            return (vads, notes);
        }
        int maxDepth = AnalysisLimits.Default.MaxTreeDepth, maxVads = AnalysisLimits.Default.MaxVads;
        var seen = new HashSet<ulong>();
        // In-order walk with an explicit stack: (node, depth, expanded).
        var stack = new Stack<(ulong Node, int Depth, WindowsVad? Vad)>();
        if (root != 0)
        {
            stack.Push((root, 1, null));
        }
        byte[] raw = new byte[NodeSize];
        while (stack.Count > 0)
        {
            ct.ThrowIfCancellationRequested();
            (ulong node, int depth, WindowsVad? done) = stack.Pop();
            if (done is not null)
            {
                vads.Add(done);
                continue;
            }
            if (!Plausible(node))
            {
                notes.Add($"pid {pid}: bad VAD pointer 0x{node:X} at depth {depth}; subtree skipped");
                continue;
            }
            if (!seen.Add(node))
            {
                notes.Add($"pid {pid}: VAD 0x{node:X} seen before (cycle); subtree skipped");
                continue;
            }
            if (depth > maxDepth)
            {
                notes.Add($"pid {pid}: VAD tree deeper than {maxDepth} at 0x{node:X}; subtree skipped");
                continue;
            }
            if (seen.Count > maxVads)
            {
                notes.Add($"pid {pid}: more than {maxVads} VADs; walk stopped");
                break;
            }
            if (k.Read(node, raw) != raw.Length)
            {
                k.TryTranslate(node, out _, out TranslationFault fault);
                notes.Add($"pid {pid}: VAD 0x{node:X} does not read ({fault}); subtree skipped");
                continue;
            }
            WindowsVad? vad = Decode(node, raw);
            if (vad is null)
            {
                notes.Add($"pid {pid}: VAD 0x{node:X} has an impossible range; subtree skipped");
                continue;
            }
            ulong left = Read64(raw, _left), right = Read64(raw, _right);
            if (right != 0)
            {
                stack.Push((right, depth + 1, null));
            }
            stack.Push((node, depth, vad));
            if (left != 0)
            {
                stack.Push((left, depth + 1, null));
            }
        }
        for (int i = 1; i < vads.Count; i++)
        {
            if (vads[i].Start <= vads[i - 1].End)
            {
                notes.Add($"pid {pid}: VAD 0x{vads[i].Node:X} [0x{vads[i].Start:X}] is out of order after 0x{vads[i - 1].Node:X} [0x{vads[i - 1].Start:X}-0x{vads[i - 1].End:X}] (smeared tree?)");
            }
        }
        return (vads, notes);
    }

    private static bool Plausible(ulong pointer) => pointer >= 0xFFFF_8000_0000_0000 && (pointer & 7) == 0;

    private WindowsVad? Decode(ulong node, byte[] raw)
    {
        ulong startVpn = Bits(raw, _startVpn), endVpn = Bits(raw, _endVpn);
        if (_startHigh is not null && _endHigh is not null)
        {
            startVpn |= Bits(raw, _startHigh) << 32;
            endVpn |= Bits(raw, _endHigh) << 32;
        }
        ulong start = startVpn << 12, end = ((endVpn + 1) << 12) - 1;
        if (endVpn < startVpn || start >= UserEnd || end >= UserEnd)
        {
            return null;
        }
        ulong commit = Bits(raw, _commit);
        if (_commitHigh is not null)
        {
            commit |= Bits(raw, _commitHigh) << _commit.BitSize;
        }
        bool isPrivate = Bits(raw, _private) != 0;
        int vadType = (int)Bits(raw, _vadType);
        string? tag = Tag(node);
        bool isLong = tag is not null && tag.StartsWith("Vad", StringComparison.Ordinal) && tag is not ("VadS" or "VadF")
            || tag is null && !isPrivate;
        string? file = isLong && (!isPrivate || vadType == WindowsVad.VadImageMap) ? FileName(node) : null;
        return new WindowsVad(node, start, end, tag, (int)Bits(raw, _protection), isPrivate, vadType, commit,
            Read64(raw, _parent) & ~3UL, file);
    }

    /// <summary>The pool tag just before the node, when it is printable.</summary>
    private string? Tag(ulong node)
    {
        Span<byte> tag = stackalloc byte[4];
        if (_kernel.Kernel.Read(node - (ulong)_poolHeaderSize + (ulong)_poolTag, tag) != 4)
        {
            return null;
        }
        foreach (byte b in tag)
        {
            if (b is < 0x20 or > 0x7E)
            {
                return null;
            }
        }
        return Encoding.ASCII.GetString(tag);
    }

    /// <summary>_MMVAD.Subsection -> _SUBSECTION.ControlArea -> _CONTROL_AREA.FilePointer (_EX_FAST_REF) -> _FILE_OBJECT.FileName.</summary>
    private string? FileName(ulong node)
    {
        AddressSpace k = _kernel.Kernel;
        if (!k.TryReadUInt64(node + (ulong)_subsection, out ulong subsection) || !Plausible(subsection)
            || !k.TryReadUInt64(subsection + (ulong)_controlArea, out ulong controlArea) || !Plausible(controlArea)
            || !k.TryReadUInt64(controlArea + (ulong)_filePointer, out ulong fastRef))
        {
            return null;
        }
        ulong file = fastRef & ~0xFUL;
        return Plausible(file) ? WindowsMemoryReader.UnicodeString(k, file + (ulong)_fileName, _unicode) : null;
    }

    private static ulong Read64(byte[] raw, int offset) => BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(offset));

    /// <summary>A field or bitfield of a node read as an unsigned value.</summary>
    private static ulong Bits(byte[] raw, FieldInfo field)
    {
        int first = (int)(field.BitOffset / 8);
        int shift = (int)(field.BitOffset % 8);
        int bits = field.IsBitfield ? field.BitSize : field.Type.Resolve().Size * 8;
        int bytes = Math.Min((shift + bits + 7) / 8, raw.Length - first);
        ulong value = 0;
        for (int b = 0; b < bytes && b < 8; b++)
        {
            value |= (ulong)raw[first + b] << (8 * b);
        }
        value >>= shift;
        return bits >= 64 ? value : value & ((1UL << bits) - 1);
    }
}
