using System.Buffers;
using System.Buffers.Binary;
using CloudMem.VmStateParsers;
using static CloudMem.Engine.Symbols.BtfLayout;

namespace CloudMem.Engine.Symbols;

public static partial class BtfLoader
{
    private static ReadOnlySpan<byte> MagicBytes => [0x9F, 0xEB, 0x01, 0x00];

    /// <summary>
    /// Scans physical memory for the running kernel's BTF blob (the <c>.BTF</c> section of vmlinux, kept in the
    /// physically contiguous kernel image): every <c>9F EB 01 00</c> followed by a plausible header (24- or 32-byte
    /// header, sections inside the blob, blob under 64 MiB, string section ending in NUL, first type record sound).
    /// Kernel modules carry BTF too; the largest candidate is vmlinux's.
    /// </summary>
    /// <param name="memory">The capture; read only.</param>
    /// <param name="physicalAddress">Where the blob starts.</param>
    /// <param name="length">Its length in bytes (header and sections).</param>
    /// <param name="ct">Cancels the scan.</param>
    /// <returns>False when no candidate is found. Never throws for unreadable memory.</returns>
    /// <remarks>Read the blob with <see cref="IPhysicalMemory.Read"/> and pass it to <see cref="Load"/>.</remarks>
    public static bool TryFind(IPhysicalMemory memory, out ulong physicalAddress, out int length, CancellationToken ct = default)
        => TryFind(memory, 0, ulong.MaxValue, out physicalAddress, out length, ct);

    /// <summary>As <see cref="TryFind(IPhysicalMemory, out ulong, out int, CancellationToken)"/>, scanning only
    /// physical [<paramref name="scanStart"/>, <paramref name="scanEnd"/>) for the header (the blob may extend past it).</summary>
    public static bool TryFind(IPhysicalMemory memory, ulong scanStart, ulong scanEnd, out ulong physicalAddress, out int length, CancellationToken ct = default)
    {
        ulong bestAddress = 0;
        int bestLength = 0;
        IPhysicalMemory scanned = scanStart == 0 && scanEnd == ulong.MaxValue ? memory : new PhysicalWindow(memory, scanStart, scanEnd);
        Span<byte> seam = stackalloc byte[6];
        SequentialReader.ForEachBlock(scanned, (pa, data) =>
        {
            int from = 0;
            while (true)
            {
                int hit = data[from..].IndexOf(MagicBytes);
                if (hit < 0)
                {
                    break;
                }
                Consider(memory, pa + (ulong)(from + hit), ref bestAddress, ref bestLength);
                from += hit + 1;
            }
            return true;
        }, cancellationToken: ct);

        // Magic bytes split across two blocks (blocks are 1 MiB aligned within runs): check every seam.
        foreach (PhysicalRun run in scanned.Runs)
        {
            for (ulong boundary = run.PhysicalAddress + SequentialReader.DefaultBlockSize; boundary < run.End; boundary += SequentialReader.DefaultBlockSize)
            {
                ct.ThrowIfCancellationRequested();
                if (memory.Read(boundary - 3, seam) == seam.Length)
                {
                    for (int i = 0; i < 3; i++)
                    {
                        if (seam[i..].StartsWith(MagicBytes))
                        {
                            Consider(memory, boundary - 3 + (ulong)i, ref bestAddress, ref bestLength);
                        }
                    }
                }
            }
        }
        physicalAddress = bestAddress;
        length = bestLength;
        return bestLength > 0;
    }

    /// <summary>Finds the kernel's BTF in <paramref name="memory"/> and loads it; null when there is none.</summary>
    /// <exception cref="BtfFormatException">A candidate was found but does not parse.</exception>
    public static TypeModel? LoadFromMemory(IPhysicalMemory memory, ParserLimits? limits = null, CancellationToken ct = default)
    {
        if (!TryFind(memory, out ulong pa, out int length, ct))
        {
            return null;
        }
        byte[] blob = ArrayPool<byte>.Shared.Rent(length);
        try
        {
            int got = memory.Read(pa, blob.AsSpan(0, length));
            return Load(blob.AsSpan(0, got), $"BTF in memory at 0x{pa:X}", limits);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(blob);
        }
    }

    private static void Consider(IPhysicalMemory memory, ulong pa, ref ulong bestAddress, ref int bestLength)
    {
        Span<byte> header = stackalloc byte[LayoutHeaderSize];
        if (memory.Read(pa, header) != header.Length)
        {
            return;
        }
        uint hdrLen = BinaryPrimitives.ReadUInt32LittleEndian(header[HdrLenOffset..]);
        if (hdrLen is not (MinHeaderSize or LayoutHeaderSize))
        {
            return;
        }
        ulong typeOff = BinaryPrimitives.ReadUInt32LittleEndian(header[TypeOffOffset..]);
        ulong typeLen = BinaryPrimitives.ReadUInt32LittleEndian(header[TypeLenOffset..]);
        ulong strOff = BinaryPrimitives.ReadUInt32LittleEndian(header[StrOffOffset..]);
        ulong strLen = BinaryPrimitives.ReadUInt32LittleEndian(header[StrLenOffset..]);
        ulong total = hdrLen + Math.Max(typeOff + typeLen, strOff + strLen);
        if (hdrLen == LayoutHeaderSize)
        {
            ulong layoutEnd = (ulong)BinaryPrimitives.ReadUInt32LittleEndian(header[LayoutOffOffset..])
                + BinaryPrimitives.ReadUInt32LittleEndian(header[LayoutLenOffset..]);
            total = Math.Max(total, hdrLen + layoutEnd);
        }
        const ulong maxTotal = 64 * 1024 * 1024;
        if (typeLen < TypeRecordSize || typeLen % 4 != 0 || typeOff % 4 != 0 || strLen < 2 || total > maxTotal
            || (int)total <= bestLength)
        {
            return;
        }
        // Cheap checks first: the last string byte, the first type record.
        Span<byte> probe = stackalloc byte[TypeRecordSize];
        if (memory.Read(pa + hdrLen + strOff + strLen - 1, probe[..1]) != 1 || probe[0] != 0
            || memory.Read(pa + hdrLen + typeOff, probe) != probe.Length)
        {
            return;
        }
        int firstKind = Kind(BinaryPrimitives.ReadUInt32LittleEndian(probe[TypeInfoOffset..]));
        uint firstName = BinaryPrimitives.ReadUInt32LittleEndian(probe);
        if (firstKind is 0 or > KindEnum64 || firstName >= strLen)
        {
            return;
        }
        // Then the whole header and type index of the candidate.
        byte[] blob = ArrayPool<byte>.Shared.Rent((int)total);
        try
        {
            Span<byte> span = blob.AsSpan(0, (int)total);
            if (memory.Read(pa, span) != span.Length)
            {
                return;
            }
            var reader = new BtfReader(span, "candidate", ParserLimits.Default);
            reader.IndexTypes(reader.ReadHeader());
            bestAddress = pa;
            bestLength = (int)total;
        }
        catch (BtfFormatException)
        {
            // Not BTF after all (or a damaged copy): keep looking.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(blob);
        }
    }
}
