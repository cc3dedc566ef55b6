using System.Buffers.Binary;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Kdump;

/// <summary>
/// The file a flattened makedumpfile stream describes, reassembled virtually: an index of
/// (reassembled offset, stream offset, length) pieces built once from the records, last writer winning.
/// Bytes no record wrote read as zero, as they would in the rearranged file.
/// </summary>
internal sealed class FlattenedSource : IByteSource
{
    private const string FormatName = "kdump-flattened";
    private const int HeaderBlock = 0x1000;
    private const int TypeOffset = 0x10;         // i64 big-endian, 1 = TYPE_FLAT_HEADER
    private const int VersionOffset = 0x18;      // i64 big-endian, 1
    private const int RecordHeader = 16;         // i64 BE offset, i64 BE size

    private readonly IByteSource _file;
    private readonly long[] _target;
    private readonly long[] _stream;
    private readonly long[] _length;

    private FlattenedSource(IByteSource file, long[] target, long[] stream, long[] length, long reassembledLength, int records)
    {
        _file = file;
        _target = target;
        _stream = stream;
        _length = length;
        Length = reassembledLength;
        RecordCount = records;
    }

    public long Length { get; }

    public string Path => _file.Path;

    public int RecordCount { get; }

    private readonly record struct Record(long Target, long Stream, long Length, int Sequence);

    public static FlattenedSource Build(IByteSource file, ParserLimits limits)
    {
        if (file.Length < HeaderBlock)
        {
            throw Fail.At(FormatName, "flat header", 0, $"file is {file.Length} bytes, the flat header block alone is {HeaderBlock}");
        }
        ReadOnlySpan<byte> head = file.Span(0, HeaderBlock);
        long type = BinaryPrimitives.ReadInt64BigEndian(head[TypeOffset..]);
        long version = BinaryPrimitives.ReadInt64BigEndian(head[VersionOffset..]);
        if (type != 1)
        {
            throw Fail.At(FormatName, "flat header.type", TypeOffset, $"type {type} is not 1 (TYPE_FLAT_HEADER)");
        }
        if (version != 1)
        {
            throw Fail.At(FormatName, "flat header.version", VersionOffset, $"version {version} is not supported (only 1)");
        }
        var records = new List<Record>();
        long position = HeaderBlock;
        bool ended = false;
        bool truncated = false;
        bool sorted = true;
        long reassembled = 0;
        long lastEnd = 0;
        while (position < file.Length)
        {
            if (file.Length - position < RecordHeader)
            {
                // A truncated copy ends inside a record header: what came before is kept (MissingEndMarker says so).
                break;
            }
            ReadOnlySpan<byte> rh = file.Span(position, RecordHeader);
            long offset = BinaryPrimitives.ReadInt64BigEndian(rh);
            long size = BinaryPrimitives.ReadInt64BigEndian(rh[8..]);
            if (offset == -1 && size == -1)
            {
                ended = true;
                break;
            }
            if (offset >= 0 && size > file.Length - position - RecordHeader && records.Count > 0)
            {
                // A truncated copy ends inside a record's data: keep the bytes that are there, then stop.
                size = file.Length - position - RecordHeader;
                truncated = true;
            }
            if (offset < 0 || size < 0 || size > file.Length - position - RecordHeader)
            {
                throw Fail.At(FormatName, $"record[{records.Count}]", position,
                    $"offset 0x{offset:X} size 0x{size:X} is invalid or runs past the end of the file (0x{file.Length:X})");
            }
            if (offset > long.MaxValue - size)
            {
                throw Fail.At(FormatName, $"record[{records.Count}].offset", position, $"offset 0x{offset:X} + size overflows");
            }
            if (records.Count >= limits.MaxFlattenedRecords)
            {
                throw Fail.At(FormatName, $"record[{records.Count}]", position, $"more than {limits.MaxFlattenedRecords} records (ParserLimits.MaxFlattenedRecords)");
            }
            if (size > 0)
            {
                if (offset < lastEnd)
                {
                    sorted = false;
                }
                lastEnd = Math.Max(lastEnd, offset + size);
                records.Add(new Record(offset, position + RecordHeader, size, records.Count));
                reassembled = Math.Max(reassembled, offset + size);
            }
            position += RecordHeader + size;
            if (truncated)
            {
                break;
            }
        }
        if (records.Count == 0)
        {
            throw Fail.At(FormatName, "record[0]", HeaderBlock, "the stream holds no records");
        }
        List<Record> pieces = sorted ? records : Resolve(records);
        var target = new long[pieces.Count];
        var stream = new long[pieces.Count];
        var length = new long[pieces.Count];
        for (int i = 0; i < pieces.Count; i++)
        {
            target[i] = pieces[i].Target;
            stream[i] = pieces[i].Stream;
            length[i] = pieces[i].Length;
        }
        var source = new FlattenedSource(file, target, stream, length, reassembled, records.Count);
        if (!ended)
        {
            source.MissingEndMarker = true;
        }
        return source;
    }

    /// <summary>True when the stream stopped without its end record (a truncated copy).</summary>
    public bool MissingEndMarker { get; private set; }

    // Records overlap (headers rewritten at the end): sweep over boundaries, the highest sequence number wins.
    private static List<Record> Resolve(List<Record> records)
    {
        var events = new List<(long Position, int Index, bool Start)>(records.Count * 2);
        for (int i = 0; i < records.Count; i++)
        {
            events.Add((records[i].Target, i, true));
            events.Add((records[i].Target + records[i].Length, i, false));
        }
        events.Sort((a, b) => a.Position.CompareTo(b.Position));
        var active = new PriorityQueue<int, int>(Comparer<int>.Create((a, b) => b.CompareTo(a)));
        var ended = new bool[records.Count];
        var pieces = new List<Record>();
        int e = 0;
        while (e < events.Count)
        {
            long at = events[e].Position;
            for (; e < events.Count && events[e].Position == at; e++)
            {
                if (events[e].Start)
                {
                    active.Enqueue(events[e].Index, records[events[e].Index].Sequence);
                }
                else
                {
                    ended[events[e].Index] = true;
                }
            }
            while (active.Count > 0 && ended[active.Peek()])
            {
                active.Dequeue();
            }
            if (active.Count == 0 || e >= events.Count)
            {
                continue;
            }
            long next = events[e].Position;
            Record winner = records[active.Peek()];
            long stream = winner.Stream + (at - winner.Target);
            if (pieces.Count > 0 && pieces[^1].Sequence == winner.Sequence && pieces[^1].Target + pieces[^1].Length == at)
            {
                pieces[^1] = pieces[^1] with { Length = pieces[^1].Length + (next - at) };
            }
            else
            {
                pieces.Add(new Record(at, stream, next - at, winner.Sequence));
            }
        }
        return pieces;
    }

    private int Find(long offset)
    {
        int lo = 0;
        int hi = _target.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            if (offset < _target[mid])
            {
                hi = mid - 1;
            }
            else if (offset - _target[mid] >= _length[mid])
            {
                lo = mid + 1;
            }
            else
            {
                return mid;
            }
        }
        return ~lo; // index of the next piece
    }

    public int Read(long offset, Span<byte> destination)
    {
        if (offset < 0 || offset >= Length)
        {
            return 0;
        }
        int total = 0;
        int wanted = (int)Math.Min(destination.Length, Length - offset);
        while (total < wanted)
        {
            int index = Find(offset);
            int count;
            if (index >= 0)
            {
                long inPiece = offset - _target[index];
                count = (int)Math.Min(wanted - total, _length[index] - inPiece);
                int got = _file.Read(_stream[index] + inPiece, destination.Slice(total, count));
                if (got < count)
                {
                    return total + got; // the stream could not be read here (a remote failure): a short read, never stale bytes
                }
            }
            else
            {
                int next = ~index;
                long gapEnd = next < _target.Length ? _target[next] : Length;
                count = (int)Math.Min(wanted - total, gapEnd - offset);
                destination.Slice(total, count).Clear();
            }
            total += count;
            offset += count;
        }
        return total;
    }

    public bool TryGetSpan(long offset, int length, out ReadOnlySpan<byte> span)
    {
        int index = Find(offset);
        if (index >= 0 && offset - _target[index] <= _length[index] - length)
        {
            return _file.TryGetSpan(_stream[index] + (offset - _target[index]), length, out span);
        }
        span = default;
        return false;
    }

    public void ReleaseResident(long offset, long length)
    {
        int index = Find(offset);
        if (index < 0)
        {
            return;
        }
        long inPiece = offset - _target[index];
        _file.ReleaseResident(_stream[index] + inPiece, Math.Min(length, _length[index] - inPiece));
    }

    /// <summary>Drops the index without closing the file (the caller still owns it on failure).</summary>
    public void DetachAndDispose()
    {
    }

    public void Dispose() => _file.Dispose();
}
