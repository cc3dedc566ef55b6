using System.Buffers.Binary;
using CloudMem.Engine.Capture;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Convert;

/// <summary>LiME: one {header, data} record per stretch of adjacent runs.</summary>
public sealed class LimeWriter : ICaptureWriter
{
    private const uint Magic = 0x4C694D45;

    /// <inheritdoc />
    public string Name => "lime";

    /// <inheritdoc />
    public string Description => "LiME (one record per contiguous stretch)";

    /// <inheritdoc />
    public string? VerifyAs => "lime";

    /// <inheritdoc />
    public WriterStatistics Write(IPhysicalMemory memory, WriterContext context)
    {
        OutputFile file = context.CreateMain();
        int records = 0;
        ulong written = 0;
        ulong unreadable = 0;
        byte[] header = new byte[32];
        foreach ((ulong start, ulong end) in Stretches(memory.Runs))
        {
            Array.Clear(header);
            BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(4), 1);
            BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(8), start);
            BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(16), end - 1);
            file.Write(header);
            records++;
            long dataStart = file.Position;
            unreadable += SequentialReader.ForEachBlock(new PhysicalWindow(memory, start, end), (pa, data) =>
            {
                file.WriteAt(dataStart + (long)(pa - start), data);
                written += (ulong)data.Length;
                context.ReportWritten(written);
                return true;
            }, cancellationToken: context.CancellationToken);
            // Undecodable pages at the end of a stretch still take their (zero) bytes.
            file.Reserve(dataStart + (long)(end - start));
            file.WriteAt(dataStart + (long)(end - start), ReadOnlySpan<byte>.Empty);
        }
        return new WriterStatistics(records, unreadable);
    }

    /// <summary>Maximal stretches of adjacent runs.</summary>
    public static IEnumerable<(ulong Start, ulong End)> Stretches(IReadOnlyList<PhysicalRun> runs)
    {
        int i = 0;
        while (i < runs.Count)
        {
            ulong start = runs[i].PhysicalAddress;
            ulong end = runs[i].End;
            int j = i + 1;
            while (j < runs.Count && runs[j].PhysicalAddress == end)
            {
                end = runs[j].End;
                j++;
            }
            yield return (start, end);
            i = j;
        }
    }
}

/// <summary>A view of [start, end) of a capture: its runs clipped to the window, reads passed through.</summary>
public sealed class PhysicalWindow(IPhysicalMemory inner, ulong start, ulong end) : IPhysicalMemory, IDirectSpanAccess
{
    private readonly PhysicalRun[] _runs = inner.Runs
        .Where(r => r.End > start && r.PhysicalAddress < end)
        .Select(r =>
        {
            ulong from = Math.Max(r.PhysicalAddress, start);
            ulong to = Math.Min(r.End, end);
            long offset = r.Storage == RunStorage.Direct ? r.FileOffset + (long)(from - r.PhysicalAddress) : r.FileOffset;
            return new PhysicalRun(from, to - from, offset, r.Storage);
        })
        .ToArray();

    /// <inheritdoc />
    public IReadOnlyList<PhysicalRun> Runs => _runs;

    /// <inheritdoc />
    public ulong MaxAddress => _runs.Length == 0 ? start : _runs[^1].End;

    /// <inheritdoc />
    public string Description => inner.Description;

    /// <inheritdoc />
    public int Read(ulong physicalAddress, Span<byte> destination)
    {
        if (physicalAddress < start || physicalAddress >= end)
        {
            return 0;
        }
        int count = (int)Math.Min((ulong)destination.Length, end - physicalAddress);
        return inner.Read(physicalAddress, destination[..count]);
    }

    /// <inheritdoc />
    public ReadOnlySpan<byte> GetDirectSpan(ulong physicalAddress, int maxLength)
        => inner is IDirectSpanAccess direct && physicalAddress >= start && physicalAddress < end
            ? direct.GetDirectSpan(physicalAddress, (int)Math.Min((ulong)maxLength, end - physicalAddress))
            : ReadOnlySpan<byte>.Empty;

    /// <inheritdoc />
    public void ReleaseResident(ulong physicalAddress, ulong length) => (inner as IDirectSpanAccess)?.ReleaseResident(physicalAddress, length);

    /// <inheritdoc />
    public void Dispose()
    {
    }
}
