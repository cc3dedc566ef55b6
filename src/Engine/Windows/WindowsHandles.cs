using CloudMem.Engine.Core;
using System.Buffers.Binary;
using System.Globalization;
using System.Text;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows;

/// <summary>One open handle (windows.handles).</summary>
/// <param name="Pid">The owning process.</param>
/// <param name="Process">Its ImageFileName.</param>
/// <param name="Offset">Virtual address of the object body.</param>
/// <param name="HandleValue">The handle value.</param>
/// <param name="Type">Object type name (null: the decoded type index is not in ObTypeIndexTable).</param>
/// <param name="GrantedAccess">Access mask.</param>
/// <param name="Name">File: \Device\dev\path; Process: "name Pid n"; Thread: "Tid n Pid n"; Key: the key path from the control blocks; others: _OBJECT_HEADER_NAME_INFO (null: none).</param>
public sealed record WindowsHandle(long Pid, string Process, [property: Hex] ulong Offset, [property: Hex] ulong HandleValue, string? Type,
    [property: Hex] uint GrantedAccess, string? Name);

/// <summary>
/// windows.handles: each process's _HANDLE_TABLE (EPROCESS.ObjectTable) walked through TableCode (level 0: a page of
/// _HANDLE_TABLE_ENTRY; levels 1 and 2: pages of pointers to lower levels), each entry decoded to its _OBJECT_HEADER
/// (Windows 8+: ObjectPointerBits &lt;&lt; 4, sign-extended; Windows 7: Object with the attribute bits masked), the type from
/// the object manager and a name per type.
/// </summary>
public static class WindowsHandles
{
    private const int PageSize = 0x1000;
    private const int PointersPerPage = PageSize / 8;

    /// <summary>Largest handle value walked when NextHandleNeedingPool is absent or implausible (2^24 handles).</summary>
    public const ulong MaxHandleValue = 1UL << 26;

    /// <summary>Deepest key control block chain followed for a key name.</summary>
    public const int MaxKeyDepth = 64;

    /// <summary>The handles of every listed process (or those in <paramref name="pids"/>).</summary>
    public static RowsReport<WindowsHandle> Handles(WindowsKernel kernel, ISet<long>? pids = null, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        (List<WindowsProcess> processes, List<string> listNotes) = WindowsProcesses.List(kernel, ct);
        WindowsObjectManager objects = WindowsObjectManager.Open(kernel, processes, ct);   // one walk serves both
        var notes = new List<string>(objects.Notes);
        notes.AddRange(listNotes.Select(n => "pslist: " + n));
        var layout = new Layout(kernel.Types);
        var rows = new List<WindowsHandle>();
        foreach (WindowsProcess p in processes)
        {
            ct.ThrowIfCancellationRequested();
            if (pids is not null && !pids.Contains(p.Pid))
            {
                continue;
            }
            foreach ((ulong value, ObjectHeader header, uint access) in Entries(objects, layout, p, notes, ct))
            {
                rows.Add(new WindowsHandle(p.Pid, p.ImageFileName, header.Body, value, header.TypeName, access,
                    header.TypeName is null ? null : ObjectName(objects, layout, header)));
            }
        }
        return new RowsReport<WindowsHandle>("windows.handles", rows, notes);
    }

    /// <summary>The in-use entries of a process's handle table, in handle order.</summary>
    private static List<(ulong Value, ObjectHeader Header, uint Access)> Entries(WindowsObjectManager objects, Layout l, WindowsProcess p, List<string> notes, CancellationToken ct)
    {
        var entries = new List<(ulong, ObjectHeader, uint)>();
        AddressSpace space = objects.Kernel.Kernel;
        string who = $"pid {p.Pid} ({p.ImageFileName})";
        if (!space.TryReadUInt64(p.Offset + (ulong)l.ObjectTable, out ulong table))
        {
            notes.Add($"{who}: _EPROCESS.ObjectTable does not read");
            return entries;
        }
        if (table == 0)
        {
            return entries;                                  // an exiting process has no handle table
        }
        if (!WindowsObjectManager.IsKernelPointer(table) || !space.TryReadUInt64(table + (ulong)l.TableCode, out ulong tableCode))
        {
            space.TryTranslate(table, out _, out TranslationFault fault);
            notes.Add($"{who}: handle table 0x{table:X} does not read ({(WindowsObjectManager.IsKernelPointer(table) ? fault : "not a kernel address")}); its handles are not listed");
            return entries;
        }
        ulong limit = MaxHandleValue;
        if (l.NextHandleNeedingPool >= 0 && space.TryReadUInt32(table + (ulong)l.NextHandleNeedingPool, out uint next) && next > 0 && next <= MaxHandleValue)
        {
            limit = next;
        }
        int level = (int)(tableCode & 3);
        if (level == 3)
        {
            notes.Add($"{who}: handle table 0x{table:X} has TableCode 0x{tableCode:X} (level 3 does not exist); its handles are not listed");
            return entries;
        }
        var walk = new Walk(objects, l, who, limit, entries, notes, ct);
        walk.Level(tableCode & ~7UL, level, 0);
        if (walk.BadHeaders > 0)
        {
            notes.Add($"{who}: {walk.BadHeaders} handle entries point at object headers that do not read");
        }
        if (walk.UnknownTypes > 0)
        {
            notes.Add($"{who}: {walk.UnknownTypes} handles have a type index not in ObTypeIndexTable");
        }
        return entries;
    }

    private sealed class Walk(WindowsObjectManager objects, Layout l, string who, ulong limit, List<(ulong, ObjectHeader, uint)> entries, List<string> notes, CancellationToken ct)
    {
        private readonly byte[][] _pages = [new byte[PageSize], new byte[PageSize], new byte[PageSize]];

        public int BadHeaders { get; private set; }

        public int UnknownTypes { get; private set; }

        public void Level(ulong page, int level, ulong firstIndex)
        {
            ct.ThrowIfCancellationRequested();
            AddressSpace space = objects.Kernel.Kernel;
            byte[] bytes = _pages[level];
            if (!WindowsObjectManager.IsKernelPointer(page) || space.Read(page, bytes) != PageSize)
            {
                space.TryTranslate(page, out _, out TranslationFault fault);
                notes.Add($"{who}: level-{level} handle table page 0x{page:X} does not read ({(WindowsObjectManager.IsKernelPointer(page) ? fault : "not a kernel address")}); handles from 0x{firstIndex * 4:X} skipped");
                return;
            }
            if (level == 0)
            {
                for (int i = 0; i < l.EntriesPerPage; i++)
                {
                    ulong value = (firstIndex + (ulong)i) * 4;
                    if (value >= limit)
                    {
                        return;
                    }
                    if (Decode(bytes.AsSpan(i * l.EntrySize, l.EntrySize), out ulong header, out uint access))
                    {
                        if (!objects.TryReadHeader(header, out ObjectHeader h))
                        {
                            BadHeaders++;
                            continue;
                        }
                        if (h.TypeName is null)
                        {
                            UnknownTypes++;
                        }
                        entries.Add((value, h, access));
                    }
                }
                return;
            }
            ulong span = (ulong)l.EntriesPerPage * (level == 2 ? PointersPerPage : 1UL);
            for (int j = 0; j < PointersPerPage; j++)
            {
                ulong first = firstIndex + (ulong)j * span;
                if (first * 4 >= limit)
                {
                    return;
                }
                ulong lower = BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(j * 8));
                if (lower != 0)
                {
                    Level(lower, level - 1, first);
                }
            }
        }

        /// <summary>An in-use entry's object header address and access mask.</summary>
        private bool Decode(ReadOnlySpan<byte> entry, out ulong header, out uint access)
        {
            if (l.PointerBits is FieldInfo pointer)
            {
                ulong low = BinaryPrimitives.ReadUInt64LittleEndian(entry);
                header = (Bits(entry, pointer) << 4) | 0xFFFF000000000000UL;
                access = (uint)Bits(entry, l.AccessBits!);
                return low != 0;
            }
            ulong value = BinaryPrimitives.ReadUInt64LittleEndian(entry[l.Object..]);
            header = value & ~7UL;                                   // OBJ_HANDLE_ATTRIBUTES
            access = BinaryPrimitives.ReadUInt32LittleEndian(entry[l.GrantedAccess..]);
            return header != 0;
        }

        private static ulong Bits(ReadOnlySpan<byte> entry, FieldInfo field)
        {
            int start = (int)(field.BitOffset / 8);
            ulong word = BinaryPrimitives.ReadUInt64LittleEndian(entry[start..]);
            return (word >> (int)(field.BitOffset % 8)) & ((1UL << field.BitSize) - 1);
        }
    }

    /// <summary>The name windows.handles shows for an object of a known type.</summary>
    private static string? ObjectName(WindowsObjectManager objects, Layout l, in ObjectHeader header)
    {
        AddressSpace space = objects.Kernel.Kernel;
        ulong body = header.Body;
        switch (header.TypeName)
        {
            case "File":
            {
                string? file = WindowsMemoryReader.UnicodeString(space, body + (ulong)l.FileName, l.UnicodeString);
                if (space.TryReadUInt64(body + (ulong)l.DeviceObject, out ulong device) && device != 0
                    && objects.TryReadHeaderOfBody(device, out ObjectHeader deviceHeader) && objects.NameInfoName(deviceHeader) is string deviceName)
                {
                    return $@"\Device\{deviceName}{file}";
                }
                return file;
            }
            case "Process":
            {
                byte[] name = new byte[15];
                if (space.Read(body + (ulong)l.ImageFileName, name) != name.Length || !space.TryReadUInt64(body + (ulong)l.Pid, out ulong pid))
                {
                    return null;
                }
                int nul = Array.IndexOf(name, (byte)0);
                return $"{Encoding.ASCII.GetString(name, 0, nul >= 0 ? nul : name.Length)} Pid {pid}";
            }
            case "Thread":
                return space.TryReadUInt64(body + (ulong)l.CidProcess, out ulong process) && space.TryReadUInt64(body + (ulong)l.CidThread, out ulong thread)
                    ? string.Create(CultureInfo.InvariantCulture, $"Tid {thread} Pid {process}")
                    : null;
            case "Key":
                return KeyName(space, l, body);
            default:
                return objects.NameInfoName(header);
        }
    }

    /// <summary>\A\B\C from the key control blocks: each KCB's name block, then its ParentKcb (bounded, cycle-checked).</summary>
    private static string? KeyName(AddressSpace space, Layout l, ulong keyBody)
    {
        if (!space.TryReadUInt64(keyBody + (ulong)l.KeyControlBlock, out ulong kcb) || kcb == 0)
        {
            return null;
        }
        var parts = new List<string>();
        var seen = new HashSet<ulong>();
        while (kcb != 0)
        {
            if (!seen.Add(kcb) || parts.Count >= MaxKeyDepth
                || !space.TryReadUInt64(kcb + (ulong)l.NameBlock, out ulong nameBlock)
                || !space.TryReadUInt64(kcb + (ulong)l.ParentKcb, out ulong parent)
                || KeyComponent(space, l, nameBlock) is not string part)
            {
                parts.Add("?");                               // the chain breaks here: the rest of the path is unknown
                break;
            }
            parts.Add(part);
            kcb = parent;
        }
        parts.Reverse();
        return "\\" + string.Join('\\', parts);
    }

    /// <summary>A _CM_NAME_CONTROL_BLOCK's name: one byte per character when Compressed, else UTF-16.</summary>
    private static string? KeyComponent(AddressSpace space, Layout l, ulong nameBlock)
    {
        Span<byte> head = stackalloc byte[8];
        Span<byte> count = stackalloc byte[2];
        if (nameBlock == 0 || space.Read(nameBlock + (ulong)(l.Compressed.BitOffset / 64 * 8), head) != head.Length
            || space.Read(nameBlock + (ulong)l.NameLength, count) != count.Length)
        {
            return null;
        }
        bool compressed = ((BinaryPrimitives.ReadUInt64LittleEndian(head) >> (int)(l.Compressed.BitOffset % 64)) & 1) != 0;
        int length = BinaryPrimitives.ReadUInt16LittleEndian(count);
        byte[] name = new byte[length];
        if (length == 0 || space.Read(nameBlock + (ulong)l.Name, name) != length)
        {
            return null;
        }
        return compressed ? Encoding.Latin1.GetString(name) : Encoding.Unicode.GetString(name);
    }

    /// <summary>ISF offsets used by the walk and the names.</summary>
    private sealed class Layout
    {
        public Layout(TypeModel t)
        {
            ObjectTable = t.RequiredOffset("_EPROCESS", "ObjectTable");
            TableCode = t.RequiredOffset("_HANDLE_TABLE", "TableCode");
            NextHandleNeedingPool = t.TryGetOffset("_HANDLE_TABLE", "NextHandleNeedingPool", out int next) ? next : -1;
            EntrySize = t.RequiredSize("_HANDLE_TABLE_ENTRY") is int size and > 0 ? size : throw new KernelNotFoundException($"{t.Source}: _HANDLE_TABLE_ENTRY has size 0");
            EntriesPerPage = PageSize / EntrySize;
            PointerBits = t.FindField("_HANDLE_TABLE_ENTRY", "ObjectPointerBits");
            if (PointerBits is not null)
            {
                AccessBits = t.RequiredField("_HANDLE_TABLE_ENTRY", "GrantedAccessBits");
            }
            else
            {
                Object = t.RequiredOffset("_HANDLE_TABLE_ENTRY", "Object");
                GrantedAccess = t.RequiredOffset("_HANDLE_TABLE_ENTRY", "GrantedAccess");
            }
            UnicodeString = UnicodeStringLayout.Of(t);
            FileName = t.RequiredOffset("_FILE_OBJECT", "FileName");
            DeviceObject = t.RequiredOffset("_FILE_OBJECT", "DeviceObject");
            ImageFileName = t.RequiredOffset("_EPROCESS", "ImageFileName");
            Pid = t.RequiredOffset("_EPROCESS", "UniqueProcessId");
            CidProcess = t.RequiredOffset("_ETHREAD", "Cid.UniqueProcess");
            CidThread = t.RequiredOffset("_ETHREAD", "Cid.UniqueThread");
            KeyControlBlock = t.RequiredOffset("_CM_KEY_BODY", "KeyControlBlock");
            NameBlock = t.RequiredOffset("_CM_KEY_CONTROL_BLOCK", "NameBlock");
            ParentKcb = t.RequiredOffset("_CM_KEY_CONTROL_BLOCK", "ParentKcb");
            NameLength = t.RequiredOffset("_CM_NAME_CONTROL_BLOCK", "NameLength");
            Name = t.RequiredOffset("_CM_NAME_CONTROL_BLOCK", "Name");
            Compressed = t.RequiredField("_CM_NAME_CONTROL_BLOCK", "Compressed");
        }

        public int ObjectTable { get; }
        public int TableCode { get; }
        public int NextHandleNeedingPool { get; }
        public int EntrySize { get; }
        public int EntriesPerPage { get; }
        public FieldInfo? PointerBits { get; }
        public FieldInfo? AccessBits { get; }
        public int Object { get; }
        public int GrantedAccess { get; }
        public UnicodeStringLayout UnicodeString { get; }
        public int FileName { get; }
        public int DeviceObject { get; }
        public int ImageFileName { get; }
        public int Pid { get; }
        public int CidProcess { get; }
        public int CidThread { get; }
        public int KeyControlBlock { get; }
        public int NameBlock { get; }
        public int ParentKcb { get; }
        public int NameLength { get; }
        public int Name { get; }
        public FieldInfo Compressed { get; }
    }
}
