using System.Buffers;

namespace CloudMem.VmStateParsers;

/// <summary>
/// Walks every byte a capture holds, run by run, in fixed-size blocks: zero-copy where the capture allows it,
/// decoded into one pooled buffer otherwise. Resident pages of a memory-mapped file are released behind the walk,
/// so memory use does not grow with the capture.
/// </summary>
public static class SequentialReader
{
    /// <summary>Default block size (1 MiB).</summary>
    public const int DefaultBlockSize = 1 << 20;

    /// <summary>Called for each block: physical address and bytes (valid only during the call). Return false to stop.</summary>
    public delegate bool BlockHandler(ulong physicalAddress, ReadOnlySpan<byte> data);

    /// <summary>Walks all runs; blocks never cross a run boundary.</summary>
    /// <returns>Bytes that could not be read (undecodable pages), which are skipped.</returns>
    public static ulong ForEachBlock(IPhysicalMemory memory, BlockHandler handler, int blockSize = DefaultBlockSize, CancellationToken cancellationToken = default)
    {
        var direct = memory as IDirectSpanAccess;
        byte[] buffer = ArrayPool<byte>.Shared.Rent(blockSize);
        ulong unreadable = 0;
        try
        {
            foreach (PhysicalRun run in memory.Runs)
            {
                ulong pa = run.PhysicalAddress;
                while (pa < run.End)
                {
                    cancellationToken.ThrowIfCancellationRequested();
                    int count = (int)Math.Min((ulong)blockSize, run.End - pa);
                    ReadOnlySpan<byte> data = run.Storage == RunStorage.Direct && direct is not null
                        ? direct.GetDirectSpan(pa, count)
                        : ReadOnlySpan<byte>.Empty;
                    if (data.Length != count)
                    {
                        int got = memory.Read(pa, buffer.AsSpan(0, count));
                        if (got < count)
                        {
                            // Undecodable unit: hand over what was read, then skip one page and go on.
                            if (got > 0 && !handler(pa, buffer.AsSpan(0, got)))
                            {
                                return unreadable;
                            }
                            ulong skip = Math.Min(4096 - ((pa + (ulong)got) & 4095), run.End - pa - (ulong)got);
                            unreadable += skip;
                            pa += (ulong)got + skip;
                            continue;
                        }
                        data = buffer.AsSpan(0, count);
                    }
                    bool more = handler(pa, data);
                    direct?.ReleaseResident(pa, (ulong)count);
                    if (!more)
                    {
                        return unreadable;
                    }
                    pa += (ulong)count;
                }
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
        return unreadable;
    }
}
