using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Linux;

/// <summary>
/// The kernel's own symbol table (kallsyms), located and decoded in physical memory with no symbol file.
/// </summary>
/// <remarks>
/// The tables are found from the token table, whose single-character tokens for '0'..'9' sit at their own byte
/// values (scripts/kallsyms.c keeps every character used in names as a one-byte token at index = the character), so
/// the bytes "0\0" "1\0" ... "9\0" appear in order. From there: the token index (256 u16 offsets) follows the table;
/// the markers (u32 offsets of every 256th name) end just before it; the compressed names end before the markers;
/// kallsyms_num_syms, kallsyms_relative_base and kallsyms_offsets precede the names (the order scripts/kallsyms.c
/// writes up to Linux 6.1, each label 8-byte aligned). Every step is checked against the next one.
/// </remarks>
public sealed class Kallsyms : IKernelSymbols
{
    private static readonly byte[] s_digits = "0\u00001\u00002\u00003\u00004\u00005\u00006\u00007\u00008\u00009\u0000"u8.ToArray();
    private const int MaxSymbols = 2_000_000;

    private readonly Dictionary<string, ulong>? _byName;
    private readonly CachedNames? _cached;
    private IReadOnlyList<(string Name, char Type, ulong Address)>? _symbols;

    /// <summary>Names and type letters from the profile cache, looked up in place (no dictionary built).</summary>
    private sealed record CachedNames(StringTable Names, byte[] Types, NameIndex Index);

    private Kallsyms(Dictionary<string, ulong>? byName, List<(string Name, char Type, ulong Address)>? symbols, CachedNames? cached, ulong relativeBase,
        ulong tokenTablePhysical, bool absolutePercpu, int[] storedOffsets, ulong relativeBasePhysical)
    {
        _byName = byName;
        _symbols = symbols;
        _cached = cached;
        RelativeBase = relativeBase;
        TokenTablePhysicalAddress = tokenTablePhysical;
        AbsolutePercpu = absolutePercpu;
        StoredOffsets = storedOffsets;
        RelativeBasePhysicalAddress = relativeBasePhysical;
    }

    /// <summary>kallsyms_offsets as stored (what the profile cache keeps: the same for every boot of one build).</summary>
    internal int[] StoredOffsets { get; }

    /// <summary>Where kallsyms_relative_base was read (the one value that changes with each boot's KASLR slide).</summary>
    internal ulong RelativeBasePhysicalAddress { get; }

    /// <summary>All symbols in table order (ascending address), with their nm-style type letter.</summary>
    public IReadOnlyList<(string Name, char Type, ulong Address)> Symbols => _symbols ?? LazyInitializer.EnsureInitialized(ref _symbols, () =>
    {
        var list = new List<(string, char, ulong)>(StoredOffsets.Length);
        for (int i = 0; i < StoredOffsets.Length; i++)
        {
            list.Add((_cached!.Names[i], (char)_cached.Types[i], AddressOf(StoredOffsets[i])));
        }
        return list;
    });

    /// <summary>kallsyms_relative_base as stored (relocated by KASLR at boot, so it is a run-time address).</summary>
    public ulong RelativeBase { get; }

    /// <summary>Where the token table was found.</summary>
    public ulong TokenTablePhysicalAddress { get; }

    /// <summary>True when per-CPU symbols are stored as absolute values (CONFIG_KALLSYMS_ABSOLUTE_PERCPU).</summary>
    public bool AbsolutePercpu { get; }

    /// <inheritdoc />
    public string Source => $"kallsyms in memory (token table at physical 0x{TokenTablePhysicalAddress:X})";

    /// <inheritdoc />
    public int Count => StoredOffsets.Length;

    /// <summary>Looks a symbol up (the first one of that name).</summary>
    public bool TryGetAddress(string name, out ulong address)
    {
        if (_byName is not null)
        {
            return _byName.TryGetValue(name, out address);
        }
        bool found = _cached!.Index.TryGet(name, out int index) && (uint)index < (uint)StoredOffsets.Length;
        address = found ? AddressOf(StoredOffsets[index]) : 0;
        return found;
    }

    /// <summary>The run-time address of a kallsyms_offsets value (relative to the base, or absolute per-CPU).</summary>
    private ulong AddressOf(int value) => AddressOf(value, RelativeBase, AbsolutePercpu);

    private static ulong AddressOf(int value, ulong relativeBase, bool absolutePercpu)
        => !absolutePercpu ? relativeBase + (uint)value
            : value >= 0 ? (ulong)value
            : relativeBase - 1 - (ulong)(long)value;

    /// <summary>The table as the profile cache recorded it (names, type letters, stored offsets and a sorted name
    /// index), with this capture's relative base; null when it lacks _text and _stext.</summary>
    internal static Kallsyms? FromCache(StringTable names, byte[] types, int[] stored, NameIndex index, ulong relativeBase, ulong relativeBaseAt, ulong tokenTable)
    {
        if (names.Count != stored.Length || types.Length != stored.Length || stored.Length == 0)
        {
            return null;
        }
        var table = new Kallsyms(null, null, new CachedNames(names, types, index), relativeBase, tokenTable, IsAbsolutePercpu(stored), stored, relativeBaseAt);
        return table.TryGetAddress("_text", out _) || table.TryGetAddress("_stext", out _) ? table : null;
    }

    private static bool IsAbsolutePercpu(int[] stored)
    {
        int negative = 0;
        foreach (int value in stored)
        {
            if (value < 0)
            {
                negative++;
            }
        }
        return negative > stored.Length / 2;
    }

    /// <summary>Scans physical memory for the tables; null with <paramref name="why"/> when they cannot be found.</summary>
    /// <param name="memory">The capture.</param>
    /// <param name="why">Why not, when null is returned.</param>
    /// <param name="near">Optional physical range to try first (the kernel image around its banner); the whole
    /// capture is scanned only when nothing validates there.</param>
    /// <param name="cancellationToken">Cancellation.</param>
    public static Kallsyms? Find(IPhysicalMemory memory, out string why, (ulong Start, ulong End)? near = null, CancellationToken cancellationToken = default)
    {
        if (near is { } window)
        {
            Kallsyms? close = FindIn(memory, new PhysicalWindow(memory, window.Start, window.End), out _, cancellationToken);
            if (close is not null)
            {
                why = "";
                return close;
            }
        }
        return FindIn(memory, memory, out why, cancellationToken);
    }

    private static Kallsyms? FindIn(IPhysicalMemory memory, IPhysicalMemory scanned, out string why, CancellationToken cancellationToken)
    {
        var candidates = new List<ulong>();
        ulong previousEnd = ulong.MaxValue;
        SequentialReader.ForEachBlock(scanned, (pa, data) =>
        {
            int from = 0;
            while (candidates.Count < 64)
            {
                int hit = data[from..].IndexOf(s_digits);
                if (hit < 0)
                {
                    break;
                }
                candidates.Add(pa + (ulong)(from + hit));
                from += hit + 1;
            }
            previousEnd = pa + (ulong)data.Length;
            return candidates.Count < 64;
        }, cancellationToken: cancellationToken);
        if (candidates.Count == 0)
        {
            why = "no kallsyms token table in memory (the digits tokens \"0\\0 1\\0 ... 9\\0\" were not found)";
            return null;
        }
        string last = "";
        foreach (ulong candidate in candidates)
        {
            Kallsyms? table = TryAt(memory, candidate, out last);
            if (table is not null)
            {
                why = "";
                return table;
            }
        }
        why = $"kallsyms token-table candidates found ({candidates.Count}) but none validated; last: {last}";
        return null;
    }

    private static Kallsyms? TryAt(IPhysicalMemory memory, ulong digitsAt, out string why)
    {
        // 1. Token table start: 0x30 tokens before "0".
        const int window = 16 * 1024;
        ulong windowStart = digitsAt > window ? digitsAt - window : 0;
        byte[] around = new byte[2 * window];
        int got = memory.Read(windowStart, around);
        int digitIndex = (int)(digitsAt - windowStart);
        int position = digitIndex;
        for (int k = 0; k < 0x30; k++)
        {
            int previousNul = Array.LastIndexOf(around, (byte)0, position - 2, Math.Max(0, position - 1));
            if (previousNul < 0 || position - previousNul < 3)
            {
                why = $"token table before 0x{digitsAt:X} is not a run of non-empty strings";
                return null;
            }
            position = previousNul + 1;
        }
        int tableStart = position;
        var tokens = new string[256];
        var tokenOffsets = new int[256];
        int p = tableStart;
        for (int i = 0; i < 256; i++)
        {
            int nul = Array.IndexOf(around, (byte)0, p, got - p);
            if (nul < 0 || nul == p || nul - p > 64)
            {
                why = $"token {i} at 0x{windowStart + (ulong)p:X} is not a short NUL-terminated string";
                return null;
            }
            tokenOffsets[i] = p - tableStart;
            tokens[i] = Encoding.Latin1.GetString(around, p, nul - p);
            p = nul + 1;
        }
        int tableEnd = p;
        int indexAt = -1;
        foreach (int align in new[] { 2, 4, 8 })
        {
            int candidate = (tableEnd + align - 1) & ~(align - 1);
            if (candidate + 512 > got)
            {
                continue;
            }
            bool ok = true;
            for (int i = 0; i < 256 && ok; i++)
            {
                ok = BinaryPrimitives.ReadUInt16LittleEndian(around.AsSpan(candidate + 2 * i)) == tokenOffsets[i];
            }
            if (ok)
            {
                indexAt = candidate;
                break;
            }
        }
        if (indexAt < 0)
        {
            why = $"no kallsyms_token_index matches the token table at 0x{windowStart + (ulong)tableStart:X}";
            return null;
        }
        ulong tokenTable = windowStart + (ulong)tableStart;

        // 2. Markers (u32, ascending from 0) end right before the token table, or, on kernels that have
        //    kallsyms_seqs_of_names (3 bytes per symbol; 6.2+, and backported to later 6.1 stable releases), before that.
        foreach ((ulong markersStart, List<uint> markers) in FindMarkers(memory, tokenTable))
        {
            Kallsyms? found = TryNames(memory, markersStart, markers, tokens, tokenTable, out why);
            if (found is not null)
            {
                return found;
            }
        }
        why = $"no kallsyms_markers / names layout fits before the token table at 0x{tokenTable:X}";
        return null;
    }

    private static IEnumerable<(ulong Start, List<uint> Markers)> FindMarkers(IPhysicalMemory memory, ulong tokenTable)
    {
        // Without seqs_of_names: right before the token table, after up to 7 bytes of padding.
        ulong end = tokenTable;
        while (tokenTable - end < 8 && ReadU32(memory, end - 4) == 0)
        {
            end -= 4;
        }
        if (ReadMarkers(memory, end) is { } direct)
        {
            yield return direct;
        }
        // With seqs_of_names: 3 x num_syms bytes (+ padding) separate the markers from the token table.
        ulong span = 3UL * MaxSymbols + 16;
        ulong from = tokenTable > span ? tokenTable - span : 0;
        byte[] region = new byte[tokenTable - from];
        int got = memory.Read(from, region);
        if (got != region.Length)
        {
            yield break;
        }
        for (long x = (long)((tokenTable - 8 - from) & ~3UL); x >= 8; x -= 4)
        {
            uint last = BinaryPrimitives.ReadUInt32LittleEndian(region.AsSpan((int)x - 4));
            if (last == 0)
            {
                continue;
            }
            ulong gap = tokenTable - (from + (ulong)x);
            // Markers count M needs 3*(256(M-1)+1) <= gap <= 3*256*M + 8: at most one or two M fit a gap.
            ulong minM = (gap - 8) / 768;
            ulong maxM = gap / 3 / 256 + 1;
            int count = 0;
            uint next = uint.MaxValue;
            long q = x;
            bool zeroFound = false;
            while (q >= 4 && (ulong)count <= maxM)
            {
                q -= 4;
                uint value = BinaryPrimitives.ReadUInt32LittleEndian(region.AsSpan((int)q));
                if (value >= next)
                {
                    break;
                }
                count++;
                next = value;
                if (value == 0)
                {
                    zeroFound = true;
                    break;
                }
            }
            if (zeroFound && (ulong)count >= Math.Max(1, minM) && (ulong)count <= maxM)
            {
                var markers = new List<uint>(count);
                for (long r = q; r < x; r += 4)
                {
                    markers.Add(BinaryPrimitives.ReadUInt32LittleEndian(region.AsSpan((int)r)));
                }
                yield return (from + (ulong)q, markers);
                yield break;
            }
        }
    }

    private static (ulong, List<uint>)? ReadMarkers(IPhysicalMemory memory, ulong end)
    {
        var markers = new List<uint>();
        ulong at = end;
        uint next = uint.MaxValue;
        while (markers.Count <= MaxSymbols / 256 + 1)
        {
            at -= 4;
            uint value = ReadU32(memory, at);
            if (value >= next)
            {
                return null;
            }
            markers.Add(value);
            next = value;
            if (value == 0)
            {
                markers.Reverse();
                return (at, markers);
            }
        }
        return null;
    }

    private static Kallsyms? TryNames(IPhysicalMemory memory, ulong markersStart, List<uint> markers, string[] tokens, ulong tokenTable, out string why)
    {
        int groups = markers.Count;
        // 3. Names: find the start S such that num_syms sits just before it and decoding lands on the markers.
        ulong lastGroup = markers[^1];
        for (ulong start = markersStart - lastGroup - 1; start + 256UL * 256 > markersStart - lastGroup && start > 16; start--)
        {
            foreach (ulong numAt in new[] { start - 8, start - 4 })
            {
                if ((numAt & 3) != 0)
                {
                    continue;
                }
                uint count = ReadU32(memory, numAt);
                if (count == 0 || count > MaxSymbols || (count + 255) / 256 != groups)
                {
                    continue;
                }
                List<string>? names = DecodeNames(memory, start, (int)count, tokens, markers, markersStart);
                if (names is null)
                {
                    continue;
                }
                Kallsyms? table = BuildAddresses(memory, numAt, names, tokenTable, out why);
                if (table is not null)
                {
                    return table;
                }
            }
        }
        why = $"no kallsyms_num_syms/names layout fits the {groups} markers before 0x{markersStart:X}";
        return null;
    }

    private static List<string>? DecodeNames(IPhysicalMemory memory, ulong start, int count, string[] tokens, List<uint> markers, ulong markersStart)
    {
        if (markersStart <= start)
        {
            return null;
        }
        ulong length = markersStart - start;
        if (length > 64UL << 20)
        {
            return null;
        }
        // Cheap check first: the first 256 entries must end exactly at markers[1].
        byte[] blob = new byte[length];
        if (memory.Read(start, blob) != blob.Length)
        {
            return null;
        }
        var names = new List<string>(count);
        var builder = new StringBuilder(64);
        int offset = 0;
        for (int i = 0; i < count; i++)
        {
            if (i % 256 == 0 && markers[i / 256] != offset)
            {
                return null;
            }
            if (offset >= blob.Length)
            {
                return null;
            }
            int entryLength = blob[offset++];
            if ((entryLength & 0x80) != 0)
            {
                // Linux 6.1+: lengths over 127 take a second ULEB128 byte.
                if (offset >= blob.Length)
                {
                    return null;
                }
                entryLength = (entryLength & 0x7F) | (blob[offset++] << 7);
            }
            if (entryLength == 0 || offset + entryLength > blob.Length)
            {
                return null;
            }
            builder.Clear();
            for (int t = 0; t < entryLength; t++)
            {
                builder.Append(tokens[blob[offset + t]]);
            }
            offset += entryLength;
            names.Add(builder.ToString());
        }
        // Only alignment padding may remain before the markers.
        return blob.Length - offset < 8 ? names : null;
    }

    private static Kallsyms? BuildAddresses(IPhysicalMemory memory, ulong numAt, List<string> names, ulong tokenTable, out string why)
    {
        int count = names.Count;
        ulong relativeBaseAt = (numAt - 8) & ~7UL;
        ulong relativeBase = ReadU64(memory, relativeBaseAt);
        foreach (ulong padding in new ulong[] { 0, 4 })
        {
            ulong offsetsAt = relativeBaseAt - padding - 4UL * (ulong)count;
            byte[] raw = new byte[4 * count];
            if (memory.Read(offsetsAt, raw) != raw.Length)
            {
                continue;
            }
            int[] stored = new int[count];
            for (int i = 0; i < count; i++)
            {
                stored[i] = BinaryPrimitives.ReadInt32LittleEndian(raw.AsSpan(4 * i));
            }
            Kallsyms? table = FromTable(names.Select(n => (n[1..], n[0])).ToList(), stored, relativeBase, relativeBaseAt, tokenTable);
            if (table is not null)
            {
                why = "";
                return table;
            }
        }
        why = $"kallsyms_offsets before 0x{relativeBaseAt:X} do not give ascending addresses";
        return null;
    }

    /// <summary>
    /// The table from its parts: names with their type letters in table order, kallsyms_offsets as stored, and
    /// kallsyms_relative_base (a run-time address); null when the addresses do not ascend or _text/_stext is missing
    /// (the parts do not belong together). Used by the search and by the profile cache (which keeps names and offsets
    /// and reads only the relative base of each capture).
    /// </summary>
    internal static Kallsyms? FromTable(IReadOnlyList<(string Name, char Type)> names, int[] stored, ulong relativeBase, ulong relativeBaseAt, ulong tokenTable)
    {
        int count = names.Count;
        if (stored.Length != count || count == 0)
        {
            return null;
        }
        bool absolutePercpu = IsAbsolutePercpu(stored);
        var symbols = new List<(string, char, ulong)>(count);
        var byName = new Dictionary<string, ulong>(count, StringComparer.Ordinal);
        ulong previous = 0;
        int descending = 0;
        for (int i = 0; i < count; i++)
        {
            ulong address = AddressOf(stored[i], relativeBase, absolutePercpu);
            (string symbol, char type) = names[i];
            symbols.Add((symbol, type, address));
            byName.TryAdd(symbol, address);
            if (address < previous && address >= relativeBase)
            {
                descending++;
            }
            if (address >= relativeBase)
            {
                previous = address;
            }
        }
        if (descending > count / 100 || !byName.ContainsKey("_text") && !byName.ContainsKey("_stext"))
        {
            return null;
        }
        return new Kallsyms(byName, symbols, null, relativeBase, tokenTable, absolutePercpu, stored, relativeBaseAt);
    }

    private static uint ReadU32(IPhysicalMemory memory, ulong pa) => memory.TryReadUInt32(pa, out uint v) ? v : uint.MaxValue;

    private static ulong ReadU64(IPhysicalMemory memory, ulong pa) => memory.TryReadUInt64(pa, out ulong v) ? v : 0;
}
