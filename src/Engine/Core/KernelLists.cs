using CloudMem.Engine.Paging;

namespace CloudMem.Engine.Core;

/// <summary>Why a list walk ended.</summary>
public enum WalkEnd
{
    /// <summary>Back at the head (circular) or at a null pointer (linear): the whole list.</summary>
    Complete,
    /// <summary>An entry seen before that is not the head: a loop inside the list (smeared or tampered memory).</summary>
    Cycle,
    /// <summary>A link pointer that does not translate or read.</summary>
    Unreadable,
    /// <summary>A link pointer that is not a plausible address (non-canonical, user half for a kernel list, unaligned).</summary>
    BadPointer,
    /// <summary>More entries than the limit.</summary>
    Limit,
}

/// <summary>The entries of a list walk (link addresses, in list order) and how the walk ended.</summary>
/// <param name="Entries">The address of each entry's link field (not the head's, unless it is an entry), in list order;
/// an entry whose own link does not read is not included.</param>
/// <param name="End">Why the walk ended.</param>
/// <param name="StopAddress">The pointer at which it stopped (for anything but <see cref="WalkEnd.Complete"/>).</param>
/// <param name="Note">A sentence for the report when the walk did not complete, else null.</param>
public sealed record ListWalk(IReadOnlyList<ulong> Entries, WalkEnd End, ulong StopAddress, string? Note)
{
    /// <summary>The list was walked to its end.</summary>
    public bool Complete => End == WalkEnd.Complete;
}

/// <summary>
/// The one walker for kernel lists: Windows <c>_LIST_ENTRY</c> and Linux <c>list_head</c> (circular, doubly linked),
/// and null-terminated singly linked lists (<c>hlist_node</c>, <c>_SINGLE_LIST_ENTRY</c>, next pointers). Every walk
/// detects cycles, tolerates bad pointers (the walk stops there with a note, the entries before it are kept) and is
/// bounded by a limit; none throws for what it reads.
/// </summary>
public static class KernelLists
{
    /// <summary>
    /// Walks a circular list from <paramref name="head"/> following the pointer at <paramref name="nextOffset"/> of each
    /// link (0 for Flink/next). The head itself is not an entry unless <paramref name="headIsEntry"/> (Linux's
    /// init_task.tasks, whose owner is a task).
    /// </summary>
    /// <param name="memory">The address space the list lives in.</param>
    /// <param name="head">Address of the list head (a link field).</param>
    /// <param name="what">What the entries are, for notes ("processes", "modules").</param>
    /// <param name="maxEntries">Limit on entries.</param>
    /// <param name="plausible">Extra pointer check (e.g. kernel half); canonical and 8-byte alignment are always checked.</param>
    /// <param name="headIsEntry">Whether the head is itself an entry (listed first).</param>
    /// <param name="nextOffset">Offset of the next pointer within a link.</param>
    /// <param name="cancellationToken">Cancels the walk.</param>
    public static ListWalk Circular(IVirtualMemory memory, ulong head, string what, int maxEntries,
        Func<ulong, bool>? plausible = null, bool headIsEntry = false, int nextOffset = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var entries = new List<ulong>();
        if (headIsEntry)
        {
            entries.Add(head);
        }
        var seen = new HashSet<ulong> { head };
        ulong current = head;
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (!TryNext(memory, current, nextOffset, out ulong next))
            {
                // The entry whose own link does not read is not listed: nothing of it can be trusted.
                if (entries.Count > 0 && entries[^1] == current)
                {
                    entries.RemoveAt(entries.Count - 1);
                }
                return Stopped(entries, WalkEnd.Unreadable, current, what, memory);
            }
            if (next == head)
            {
                return new ListWalk(entries, WalkEnd.Complete, 0, null);
            }
            if (!IsPlausible(next, plausible))
            {
                return Stopped(entries, WalkEnd.BadPointer, next, what, memory);
            }
            if (!seen.Add(next))
            {
                return Stopped(entries, WalkEnd.Cycle, next, what, memory);
            }
            if (entries.Count >= maxEntries)
            {
                return Stopped(entries, WalkEnd.Limit, next, what, memory, maxEntries);
            }
            entries.Add(next);
            current = next;
        }
    }

    /// <summary>
    /// Walks a null-terminated singly linked list from <paramref name="first"/> (the first entry's link address, 0 for
    /// an empty list), following the pointer at <paramref name="nextOffset"/> of each link.
    /// </summary>
    public static ListWalk Linear(IVirtualMemory memory, ulong first, string what, int maxEntries,
        Func<ulong, bool>? plausible = null, int nextOffset = 0, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var entries = new List<ulong>();
        var seen = new HashSet<ulong>();
        ulong current = first;
        while (current != 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (!IsPlausible(current, plausible))
            {
                return Stopped(entries, WalkEnd.BadPointer, current, what, memory);
            }
            if (!seen.Add(current))
            {
                return Stopped(entries, WalkEnd.Cycle, current, what, memory);
            }
            if (entries.Count >= maxEntries)
            {
                return Stopped(entries, WalkEnd.Limit, current, what, memory, maxEntries);
            }
            if (!TryNext(memory, current, nextOffset, out ulong next))
            {
                return Stopped(entries, WalkEnd.Unreadable, current, what, memory);
            }
            entries.Add(current);
            current = next;
        }
        return new ListWalk(entries, WalkEnd.Complete, 0, null);
    }

    /// <summary>A canonical x86-64 address in the kernel (upper) half.</summary>
    public static bool IsKernelAddress(ulong address) => address >= 0xFFFF800000000000UL;

    /// <summary>A canonical x86-64 address (48-bit or 57-bit sign extension).</summary>
    public static bool IsCanonical(ulong address)
    {
        ulong top = address >> 47;
        ulong top57 = address >> 56;
        return top == 0 || top == 0x1FFFF || top57 == 0 || top57 == 0xFF;
    }

    private static bool IsPlausible(ulong pointer, Func<ulong, bool>? plausible)
        => pointer != 0 && (pointer & 7) == 0 && IsCanonical(pointer) && (plausible is null || plausible(pointer));

    private static bool TryNext(IVirtualMemory memory, ulong link, int nextOffset, out ulong next)
    {
        Span<byte> buffer = stackalloc byte[8];
        if (memory.Read(link + (ulong)nextOffset, buffer) != 8)
        {
            next = 0;
            return false;
        }
        next = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(buffer);
        return true;
    }

    private static ListWalk Stopped(List<ulong> entries, WalkEnd end, ulong at, string what, IVirtualMemory memory, int limit = 0)
    {
        string where = $"after {entries.Count} {what}";
        string note = end switch
        {
            WalkEnd.Cycle => $"list cycle: entry 0x{at:X} seen before, {where}; walk stopped",
            WalkEnd.Unreadable => $"list pointer at 0x{at:X} does not read ({Fault(memory, at)}), {where}; walk stopped",
            WalkEnd.BadPointer => $"bad list pointer 0x{at:X} {where}; walk stopped",
            _ => $"more than {limit} {what}; walk stopped",
        };
        return new ListWalk(entries, end, at, note);
    }

    private static string Fault(IVirtualMemory memory, ulong at)
        => memory.TryTranslate(at, out _, out TranslationFault fault) ? "not captured" : fault.ToString();
}
