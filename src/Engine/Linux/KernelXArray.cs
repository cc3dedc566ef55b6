using System.Buffers.Binary;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>
/// Reads a kernel xarray (also the radix tree under every IDR and every page cache): internal node entries (low bits 10,
/// above 4096) lead to an xa_node of 64 slots at shift; value entries (low bit 1: evicted-page shadows, tagged values) and
/// empty slots are skipped; a sibling entry (an internal entry below 1024) repeats an earlier slot of the same leaf node,
/// as a large folio does. Bounded in depth and nodes; never throws for what it reads.
/// </summary>
internal sealed class KernelXArray(TypeModel t)
{
    private const int ChunkShift = 6, Slots = 1 << ChunkShift;
    private const int MaxNodes = 1 << 20;
    private readonly int _nodeShift = t.TryGetOffset("xa_node", "shift", out int s) ? s : -1;
    private readonly int _nodeSlots = t.OptionalOffset("xa_node", "slots");

    /// <summary>Whether the type model has struct xa_node's shift and slots.</summary>
    public bool Available => _nodeShift >= 0 && _nodeSlots >= 0;

    /// <summary>
    /// The entries of the xarray whose xa_head is <paramref name="head"/>, by index up to <paramref name="maxIndex"/>: the entry,
    /// and for a sibling slot how many slots after its head entry it lies (0 otherwise).
    /// </summary>
    public SortedDictionary<long, (ulong Entry, int AfterHead)> Entries(IVirtualMemory k, ulong head, long maxIndex, List<string> notes, string what)
    {
        var entries = new SortedDictionary<long, (ulong, int)>();
        var stack = new Stack<(ulong Entry, long Base, int Depth)>();
        stack.Push((head, 0, 0));
        int nodes = 0;
        while (stack.Count > 0)
        {
            (ulong entry, long first, int depth) = stack.Pop();
            bool internalEntry = (entry & 3) == 2;
            if (entry == 0 || (entry & 1) != 0 || (internalEntry && entry <= 4096))
            {
                continue;
            }
            if (!internalEntry)
            {
                entries[first] = (entry, 0);
                continue;
            }
            ulong node = entry & ~3UL;
            if (!Available || depth > 12 || ++nodes > MaxNodes || LinuxSockets.ReadU8(k, node + (ulong)_nodeShift) is not byte shift || shift > 60)
            {
                notes.Add($"{what}: xarray node 0x{node:X} unreadable, too deep or too many nodes: the rest is missing");
                break;
            }
            byte[] raw = new byte[Slots * 8];
            if (k.Read(node + (ulong)_nodeSlots, raw) != raw.Length)
            {
                notes.Add($"{what}: xarray node 0x{node:X} slots unreadable");
                continue;
            }
            for (int slot = 0; slot < Slots; slot++)
            {
                ulong child = BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(slot * 8));
                long index = first + ((long)slot << shift);
                if (index > maxIndex)
                {
                    break;
                }
                if ((child & 3) == 2 && child < 1024 && shift == 0 && (int)(child >> 2) is int headSlot && headSlot < slot
                    && BinaryPrimitives.ReadUInt64LittleEndian(raw.AsSpan(headSlot * 8)) is ulong headEntry && (headEntry & 3) == 0 && headEntry != 0)
                {
                    entries[index] = (headEntry, slot - headSlot);
                    continue;
                }
                stack.Push((child, index, depth + 1));
            }
        }
        return entries;
    }
}
