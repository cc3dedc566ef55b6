using System.Buffers.Binary;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.VmStateParsers.Formats.Lime;

/// <summary>LiME: one {header, data} record per stretch of adjacent runs.</summary>
public sealed class LimeWriter : ICaptureWriter
{
    /// <inheritdoc />
    public string Name => "lime";

    /// <inheritdoc />
    public string Description => "LiME (one record per contiguous stretch)";

    /// <inheritdoc />
    public string? VerifyAs => LimeFormat.Id;

    /// <inheritdoc />
    public WriterStatistics Write(IPhysicalMemory memory, WriterContext context)
    {
        OutputFile file = context.CreateMain();
        int records = 0;
        ulong written = 0;
        ulong unreadable = 0;
        byte[] header = new byte[LimeLayout.HeaderSize];
        foreach ((ulong start, ulong end) in Stretches(memory.Runs))
        {
            Array.Clear(header);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(LimeLayout.MagicOffset), LimeLayout.Magic);
            BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(LimeLayout.VersionOffset), LimeLayout.Version);
            BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(LimeLayout.StartOffset), start);
            BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(LimeLayout.EndOffset), end - 1);
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
