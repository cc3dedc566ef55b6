using System.Buffers.Binary;
using System.Text;
using CloudMem.VmStateParsers.Codecs;

namespace CloudMem.VmStateParsers.Formats.HyperV;

/// <summary>
/// Builds a Hyper-V storage container (HyperVStorage 4.0) the way Hyper-V lays one out: two header copies, the root
/// object table at 0x2000 chained to further 227-entry tables, an empty replay log, 4 KiB key tables filled exactly
/// (a free entry takes any remainder) and one file object per large value. Keys are added by path; intermediate nodes
/// are created on demand and a repeated leaf name makes an array. Values below 2048 bytes are stored inline.
/// </summary>
/// <remarks>Not thread-safe. <see cref="Write"/> emits every byte at ascending offsets, so it can stream to a sequential sink.</remarks>
public sealed class HyperVContainerWriter
{
    private const int TableSize = HyperVLayout.DefaultKeyTableSize;
    private const int Page = (int)HyperVLayout.MinAlignment;
    private readonly Entry _root = new("", 0, (byte)HyperVKeyType.Node);
    private readonly List<Entry> _fileObjects = [];

    private sealed class Entry(string name, byte flags, byte type)
    {
        public string Name { get; } = name;
        public byte Flags { get; } = flags;
        public byte Type { get; } = type;
        public byte[] Value { get; init; } = [];
        public long FileObjectLength { get; init; }
        public Action<Span<byte>>? Fill { get; init; }
        public List<Entry> Children { get; } = [];
        public long FileObjectOffset { get; set; }
        public ushort Table { get; set; }
        public uint Offset { get; set; }
        public int Size => HyperVLayout.KeyHeaderSize + Encoding.UTF8.GetByteCount(Name) + 1 + ValueSize;
        public int ValueSize => (Flags & HyperVLayout.KeyFlagFileObject) != 0 ? HyperVLayout.FileObjectPointerSize
            : Type == (byte)HyperVKeyType.Node ? HyperVLayout.NodeDataSize : Value.Length;
    }

    /// <summary>Adds a signed integer.</summary>
    public void AddInt(string path, long value) => AddFixed(path, HyperVKeyType.Int, BitConverter.GetBytes(value));

    /// <summary>Adds an unsigned integer.</summary>
    public void AddUInt(string path, ulong value) => AddFixed(path, HyperVKeyType.UInt, BitConverter.GetBytes(value));

    /// <summary>Adds a boolean.</summary>
    public void AddBool(string path, bool value) => AddFixed(path, HyperVKeyType.Bool, BitConverter.GetBytes(value ? 1 : 0));

    /// <summary>Adds a UTF-16 string (stored without a terminator, as Hyper-V does).</summary>
    public void AddString(string path, string value) => AddBytes(path, HyperVKeyType.String, Encoding.Unicode.GetBytes(value));

    /// <summary>Adds bytes: inline below 2048 bytes, otherwise as a file object.</summary>
    public void AddArray(string path, byte[] data) => AddBytes(path, HyperVKeyType.Array, data);

    /// <summary>Adds a binary value stored as a file object whose bytes <paramref name="fill"/> produces while writing.</summary>
    /// <param name="path">Key path.</param>
    /// <param name="length">Value length (up to 4 GiB - 1).</param>
    /// <param name="fill">Called once, in file order, with a cleared buffer of <paramref name="length"/> bytes.</param>
    public void AddFileObject(string path, int length, Action<Span<byte>> fill)
    {
        (Entry parent, string name) = Parent(path);
        var entry = new Entry(name, HyperVLayout.KeyFlagFileObject, (byte)HyperVKeyType.Array) { FileObjectLength = length, Fill = fill };
        parent.Children.Add(entry);
        _fileObjects.Add(entry);
    }

    private void AddBytes(string path, HyperVKeyType type, byte[] data)
    {
        if (data.Length >= HyperVLayout.FileObjectThreshold)
        {
            (Entry parent, string name) = Parent(path);
            var entry = new Entry(name, HyperVLayout.KeyFlagFileObject, (byte)type) { FileObjectLength = data.Length, Fill = span => data.CopyTo(span) };
            parent.Children.Add(entry);
            _fileObjects.Add(entry);
            return;
        }
        byte[] value = new byte[HyperVLayout.ValueSizePrefix + data.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(value, (uint)data.Length);
        data.CopyTo(value, HyperVLayout.ValueSizePrefix);
        AddFixed(path, type, value);
    }

    private void AddFixed(string path, HyperVKeyType type, byte[] value)
    {
        (Entry parent, string name) = Parent(path);
        parent.Children.Add(new Entry(name, 0, (byte)type) { Value = value });
    }

    private (Entry Parent, string Name) Parent(string path)
    {
        string[] parts = path.Trim('/').Split('/');
        Entry node = _root;
        for (int i = 0; i < parts.Length - 1; i++)
        {
            Entry? next = node.Children.Find(c => c.Name == parts[i] && c.Type == (byte)HyperVKeyType.Node);
            if (next is null)
            {
                next = new Entry(parts[i], 0, (byte)HyperVKeyType.Node);
                node.Children.Add(next);
            }
            node = next;
        }
        if (parts[^1].Length == 0 || Encoding.UTF8.GetByteCount(parts[^1]) > 254)
        {
            throw new ArgumentException($"bad key name in '{path}'", nameof(path));
        }
        return (node, parts[^1]);
    }

    /// <summary>Writes the container through <paramref name="writeAt"/> (ascending offsets) and returns the file length.</summary>
    public long Write(Action<long, ReadOnlySpan<byte>> writeAt)
    {
        // 1. Key entries in preorder, packed into 4 KiB tables (the remainder of a table is 0 or more than a header).
        var order = new List<Entry>();
        var stack = new Stack<Entry>();
        for (int i = _root.Children.Count - 1; i >= 0; i--)
        {
            stack.Push(_root.Children[i]);
        }
        while (stack.Count > 0)
        {
            Entry e = stack.Pop();
            order.Add(e);
            for (int i = e.Children.Count - 1; i >= 0; i--)
            {
                stack.Push(e.Children[i]);
            }
        }
        var tableStarts = new List<int> { 0 };
        int pos = HyperVLayout.KeyTableHeaderSize;
        for (int i = 0; i < order.Count; i++)
        {
            int size = order[i].Size;
            int left = TableSize - pos - size;
            if (left < 0 || (left > 0 && left <= HyperVLayout.KeyHeaderSize))
            {
                tableStarts.Add(i);
                pos = HyperVLayout.KeyTableHeaderSize;
            }
            order[i].Table = (ushort)tableStarts.Count;
            order[i].Offset = (uint)pos;
            pos += size;
        }
        if (tableStarts.Count > ushort.MaxValue)
        {
            throw new InvalidOperationException("too many keys for one container (65535 key tables)");
        }
        // 2. Layout: headers, object tables, replay log, key tables, file objects.
        int usablePerTable = HyperVLayout.ObjectEntriesPerTable - 1;
        int objects = tableStarts.Count + _fileObjects.Count;
        int objectTables = Math.Max(1, (objects + usablePerTable - 1) / usablePerTable);
        long replayLog = HyperVLayout.RootObjectTable + ((long)objectTables * Page);
        long keyTables = replayLog + Page;
        long next = keyTables + ((long)tableStarts.Count * Page);
        foreach (Entry fo in _fileObjects)
        {
            fo.FileObjectOffset = next;
            next += AlignUp(fo.FileObjectLength);
        }
        long fileLength = next;

        // 3. Emit in file order.
        byte[] page = new byte[Page];
        for (int copy = 0; copy < 2; copy++)
        {
            Array.Clear(page);
            Span<byte> h = page;
            BinaryPrimitives.WriteUInt32LittleEndian(h[HyperVLayout.HeaderSignatureOffset..], HyperVLayout.HeaderSignature);
            BinaryPrimitives.WriteUInt16LittleEndian(h[HyperVLayout.HeaderSequenceOffset..], (ushort)(2 - copy));
            BinaryPrimitives.WriteUInt32LittleEndian(h[HyperVLayout.HeaderVersionOffset..], HyperVLayout.CurrentVersion);
            BinaryPrimitives.WriteUInt32LittleEndian(h[HyperVLayout.HeaderAlignmentOffset..], HyperVLayout.MinAlignment);
            BinaryPrimitives.WriteInt64LittleEndian(h[HyperVLayout.HeaderReplayLogOffset..], replayLog);
            BinaryPrimitives.WriteUInt64LittleEndian(h[HyperVLayout.HeaderReplayLogSize..], (ulong)Page);
            BinaryPrimitives.WriteUInt32LittleEndian(h[HyperVLayout.HeaderReplayLogHeaderSize..], (uint)Page);
            Seal(h[..HyperVLayout.HeaderSize], HyperVLayout.HeaderChecksumOffset);
            writeAt(copy * HyperVLayout.HeaderCopy1, page);
        }
        var objectEntries = new List<(byte Type, long Offset, uint Size)>();
        for (int t = 0; t < tableStarts.Count; t++)
        {
            objectEntries.Add((HyperVLayout.ObjectKeyTable, keyTables + ((long)t * Page), Page));
        }
        foreach (Entry fo in _fileObjects)
        {
            objectEntries.Add((HyperVLayout.ObjectFile, fo.FileObjectOffset, (uint)AlignUp(fo.FileObjectLength)));
        }
        for (int t = 0; t < objectTables; t++)
        {
            Array.Clear(page);
            long at = HyperVLayout.RootObjectTable + ((long)t * Page);
            BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(HyperVLayout.ObjectTableSignatureOffset), HyperVLayout.ObjectTableSignature);
            BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(HyperVLayout.ObjectTableCountOffset), HyperVLayout.ObjectEntriesPerTable);
            for (int i = 0; i < HyperVLayout.ObjectEntriesPerTable; i++)
            {
                int index = (t * usablePerTable) + i;
                (byte type, long offset, uint size) = i < usablePerTable && index < objectEntries.Count
                    ? objectEntries[index]
                    : i == usablePerTable && t + 1 < objectTables ? (HyperVLayout.ObjectTable, at + Page, (uint)Page) : default;
                Span<byte> e = page.AsSpan(HyperVLayout.ObjectTableHeaderSize + (i * HyperVLayout.ObjectEntrySize), HyperVLayout.ObjectEntrySize);
                e[HyperVLayout.ObjectTypeOffset] = type;
                BinaryPrimitives.WriteInt64LittleEndian(e[HyperVLayout.ObjectFileOffsetOffset..], offset);
                BinaryPrimitives.WriteUInt32LittleEndian(e[HyperVLayout.ObjectSizeOffset..], size);
                e[HyperVLayout.ObjectFlagsOffset] = type == HyperVLayout.ObjectEmpty ? (byte)0 : (byte)1;
                Seal(e, HyperVLayout.ObjectChecksumOffset);
            }
            writeAt(at, page);
        }
        Array.Clear(page);
        BinaryPrimitives.WriteUInt32LittleEndian(page, HyperVLayout.ReplayLogSignature);
        BinaryPrimitives.WriteUInt32LittleEndian(page.AsSpan(HyperVLayout.ReplayLogMaxEntriesOffset), (uint)((Page - HyperVLayout.ReplayLogHeaderSize) / HyperVLayout.ReplayLogEntrySize));
        Seal(page.AsSpan(0, HyperVLayout.ReplayLogHeaderSize), HyperVLayout.ReplayLogChecksumOffset);
        writeAt(replayLog, page);
        for (int t = 0; t < tableStarts.Count; t++)
        {
            Array.Clear(page);
            BinaryPrimitives.WriteUInt16LittleEndian(page.AsSpan(HyperVLayout.KeyTableSignatureOffset), HyperVLayout.KeyTableSignature);
            BinaryPrimitives.WriteUInt16LittleEndian(page.AsSpan(HyperVLayout.KeyTableIndexOffset), (ushort)(t + 1));
            BinaryPrimitives.WriteUInt16LittleEndian(page.AsSpan(HyperVLayout.KeyTableSequenceOffset), 1);
            Seal(page.AsSpan(0, HyperVLayout.KeyTableHeaderSize), HyperVLayout.KeyTableChecksumOffset);
            int end = t + 1 < tableStarts.Count ? tableStarts[t + 1] : order.Count;
            int used = HyperVLayout.KeyTableHeaderSize;
            for (int i = tableStarts[t]; i < end; i++)
            {
                used = WriteEntry(order[i], page);
            }
            if (used < TableSize)
            {
                Span<byte> free = page.AsSpan(used);
                free.Fill(0xFD);
                free[HyperVLayout.KeyTypeOffset] = (byte)HyperVKeyType.Free;
                free[HyperVLayout.KeyFlagsOffset] = 0;
                BinaryPrimitives.WriteUInt32LittleEndian(free[HyperVLayout.KeySizeOffset..], (uint)free.Length);
                free.Slice(HyperVLayout.KeyParentTableOffset, HyperVLayout.KeyInsertionOffset - HyperVLayout.KeyParentTableOffset).Clear();
                free[HyperVLayout.KeyNameSizeOffset] = 0;
            }
            writeAt(keyTables + ((long)t * Page), page);
        }
        byte[]? buffer = null;
        foreach (Entry fo in _fileObjects)
        {
            if (buffer is null || buffer.Length < fo.FileObjectLength)
            {
                buffer = new byte[fo.FileObjectLength];
            }
            Span<byte> data = buffer.AsSpan(0, (int)fo.FileObjectLength);
            data.Clear();
            fo.Fill!(data);
            writeAt(fo.FileObjectOffset, data);
        }
        return fileLength;
    }

    /// <summary>Serialises one key entry at its offset in <paramref name="table"/>; returns the end offset.</summary>
    private int WriteEntry(Entry e, byte[] table)
    {
        Span<byte> s = table.AsSpan((int)e.Offset, e.Size);
        (ushort parentTable, uint parentOffset) = FindParent(e);
        s[HyperVLayout.KeyTypeOffset] = e.Type;
        s[HyperVLayout.KeyFlagsOffset] = e.Flags;
        BinaryPrimitives.WriteUInt32LittleEndian(s[HyperVLayout.KeySizeOffset..], (uint)e.Size);
        BinaryPrimitives.WriteUInt16LittleEndian(s[HyperVLayout.KeyParentTableOffset..], parentTable);
        BinaryPrimitives.WriteUInt32LittleEndian(s[HyperVLayout.KeyParentOffsetOffset..], parentOffset);
        BinaryPrimitives.WriteUInt32LittleEndian(s[HyperVLayout.KeyInsertionOffset..], _sequences[e]);
        int nameLength = Encoding.UTF8.GetBytes(e.Name, s[HyperVLayout.KeyHeaderSize..]);
        s[HyperVLayout.KeyHeaderSize + nameLength] = 0;
        s[HyperVLayout.KeyNameSizeOffset] = (byte)(nameLength + 1);
        Span<byte> value = s[(HyperVLayout.KeyHeaderSize + nameLength + 1)..];
        if ((e.Flags & HyperVLayout.KeyFlagFileObject) != 0)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(value[HyperVLayout.FileObjectSizeOffset..], (uint)e.FileObjectLength);
            BinaryPrimitives.WriteInt64LittleEndian(value[HyperVLayout.FileObjectOffsetOffset..], e.FileObjectOffset);
        }
        else if (e.Type == (byte)HyperVKeyType.Node)
        {
            value[..HyperVLayout.NodeNextInsertionOffset].Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(value[HyperVLayout.NodeNextInsertionOffset..], (uint)e.Children.Count + 1);
        }
        else
        {
            e.Value.CopyTo(value);
        }
        Seal(s, HyperVLayout.KeyChecksumOffset);
        return (int)e.Offset + e.Size;
    }

    private readonly Dictionary<Entry, (Entry? Parent, uint Sequence)> _links = [];
    private Dictionary<Entry, uint> _sequences = [];

    private (ushort, uint) FindParent(Entry e)
    {
        if (_links.Count == 0)
        {
            Link(_root, null);
            _sequences = _links.ToDictionary(p => p.Key, p => p.Value.Sequence);
        }
        Entry? parent = _links[e].Parent;
        return parent is null || parent == _root ? ((ushort)0, 0u) : (parent.Table, parent.Offset);
    }

    private void Link(Entry root, Entry? parentOfRoot)
    {
        var stack = new Stack<(Entry, Entry?, uint)>();
        stack.Push((root, parentOfRoot, 0));
        while (stack.Count > 0)
        {
            (Entry e, Entry? parent, uint sequence) = stack.Pop();
            _links[e] = (parent, sequence);
            for (int i = 0; i < e.Children.Count; i++)
            {
                stack.Push((e.Children[i], e, (uint)i + 1));
            }
        }
    }

    private static long AlignUp(long length) => Math.Max(Page, (length + Page - 1) & ~(long)(Page - 1));

    private static void Seal(Span<byte> structure, int checksumOffset)
        => BinaryPrimitives.WriteUInt32LittleEndian(structure[checksumOffset..], Crc32.ComputeWithZeroField(structure, checksumOffset));
}
