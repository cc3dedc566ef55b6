using System.Buffers.Binary;
using System.Security.Cryptography;

namespace CloudMem.Connectors.Core;

/// <summary>Where a hibernation image starts on a disk image read back from a snapshot, and how far it may reach.</summary>
/// <param name="Kind">"swsusp" (Linux swap area) or "hiberfil" (Windows hiberfil.sys).</param>
/// <param name="Offset">Byte offset of the swap header page / hiberfil header on the disk.</param>
/// <param name="End">End of the partition holding it (or of the disk when no partition table says otherwise).</param>
public sealed record HibernationCandidate(string Kind, long Offset, long End)
{
    /// <summary>Bytes from <see cref="Offset"/> to <see cref="End"/>.</summary>
    public long Length => End - Offset;
}

/// <summary>
/// Finds hibernation images on a raw disk image (the snapshot read back) without opening them: a Linux swap header page
/// whose last bytes hold the kernel's hibernation signature ("S1SUSPEND", older "LINHIB0001" at 0xFF6), or a page whose
/// first four bytes are a hiberfil.sys signature (HIBR, WAKE, RSTR, HORM, hibr, wake), on 4 KiB boundaries of the
/// written ranges only; the partition (MBR or GPT) that holds it bounds it. Which candidate really is an image is
/// decided by our parsers (the <see cref="EvidenceOpener"/>) on the carved copy. Connectors reference no parser, so
/// the signatures are listed here again (the parsers' own: src/VmStateParsers/Formats/Swsusp, Hibernation).
/// Limits: hiberfil.sys must be contiguous on the NTFS volume (a fragmented file needs NTFS extent mapping, which is
/// not done here); a swap file (rather than a partition) must be contiguous likewise.
/// </summary>
public static class HibernationLocator
{
    /// <summary>Page size the signatures are looked for at.</summary>
    public const int Page = 4096;

    /// <summary>Most candidates returned.</summary>
    public const int MaxCandidates = 16;

    private static ReadOnlySpan<byte> Swsusp => "S1SUSPEND\0"u8;
    private static ReadOnlySpan<byte> SwsuspOld => "LINHIB0001"u8;
    private const int SwsuspSigOffset = 0xFF6;
    private static readonly uint[] s_hiberfil = [0x52424948, 0x454B4157, 0x52545352, 0x4D524F48, 0x72626968, 0x656B6177];

    /// <summary>Candidates in disk order, searched in <paramref name="written"/> (offset, length) ranges of <paramref name="disk"/>.</summary>
    public static IReadOnlyList<HibernationCandidate> Find(string disk, IReadOnlyList<(long Offset, long Length)> written, CancellationToken cancellationToken = default)
    {
        using var file = new FileStream(disk, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        long size = file.Length;
        IReadOnlyList<(long Start, long End)> partitions = Partitions(file);
        var found = new List<HibernationCandidate>();
        byte[] buffer = new byte[1 << 20];
        foreach ((long offset, long length) in written.OrderBy(r => r.Offset))
        {
            long start = offset / Page * Page;
            long end = Math.Min(size, offset + length);
            for (long at = start; at < end && found.Count < MaxCandidates; at += buffer.Length)
            {
                cancellationToken.ThrowIfCancellationRequested();
                file.Position = at;
                int read = file.ReadAtLeast(buffer.AsSpan(0, (int)Math.Min(buffer.Length, end - at)), Page, throwOnEndOfStream: false);
                for (int page = 0; page + Page <= read && found.Count < MaxCandidates; page += Page)
                {
                    ReadOnlySpan<byte> bytes = buffer.AsSpan(page, Page);
                    string? kind = bytes.Slice(SwsuspSigOffset, 10) is var sig && (sig.SequenceEqual(Swsusp) || sig.SequenceEqual(SwsuspOld)) ? "swsusp"
                        : s_hiberfil.Contains(BinaryPrimitives.ReadUInt32LittleEndian(bytes)) ? "hiberfil"
                        : null;
                    if (kind is not null)
                    {
                        long position = at + page;
                        long limit = partitions.Where(p => p.Start <= position && position < p.End).Select(p => p.End).DefaultIfEmpty(size).First();
                        found.Add(new HibernationCandidate(kind, position, Math.Min(limit, size)));
                    }
                }
            }
        }
        return found;
    }

    /// <summary>
    /// Copies a candidate's bytes into <paramref name="destination"/>, skipping runs of zero pages (left as holes of a
    /// sparse file), and returns the SHA-256 of the bytes copied (holes included, as zeros).
    /// </summary>
    public static string Carve(string disk, HibernationCandidate candidate, string destination, CancellationToken cancellationToken = default)
    {
        using var source = new FileStream(disk, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        using var output = new FileStream(destination, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 16);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[1 << 20];
        source.Position = candidate.Offset;
        long left = candidate.Length;
        while (left > 0)
        {
            cancellationToken.ThrowIfCancellationRequested();
            int read = source.ReadAtLeast(buffer.AsSpan(0, (int)Math.Min(buffer.Length, left)), (int)Math.Min(buffer.Length, left), throwOnEndOfStream: true);
            hash.AppendData(buffer, 0, read);
            if (buffer.AsSpan(0, read).ContainsAnyExcept((byte)0))
            {
                output.Write(buffer, 0, read);
            }
            else
            {
                output.Seek(read, SeekOrigin.Current);
            }
            left -= read;
        }
        output.SetLength(candidate.Length);
        return Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>
    /// The part every snapshot read-back shares once the disk image is local: finds the candidates in the
    /// <paramref name="written"/> ranges, carves each into <paramref name="outputDirectory"/> as
    /// <c>{filePrefix}-hibernation-{kind}-{offset}.img</c> and records the first one our parsers open as evidence (the
    /// SHA-256 of the bytes as carved from the disk, and of the copy read back from disk; <paramref name="uri"/> names
    /// its place in the snapshot). Copies that do not open are deleted. <paramref name="source"/> names the disk in
    /// messages ("snapshot snap-0abc"), <paramref name="writtenWhat"/> what the written ranges are ("12 written blocks").
    /// </summary>
    /// <exception cref="CaptureException">no candidate, or none opens (each one's problem in the message).</exception>
    public static EvidenceRecord RecordFirstImage(CustodyRecorder recorder, string disk, IReadOnlyList<(long Offset, long Length)> written,
        string outputDirectory, string filePrefix, Func<HibernationCandidate, string> uri, EvidenceOpener opener, string source, string writtenWhat,
        CancellationToken cancellationToken)
    {
        IReadOnlyList<HibernationCandidate> candidates = Find(disk, written, cancellationToken);
        var problems = new List<string>();
        foreach (HibernationCandidate candidate in candidates)
        {
            string name = $"hibernation-{candidate.Kind}-{candidate.Offset:X}.img";
            string path = Path.Combine(outputDirectory, $"{filePrefix}-{name}");
            string fromDisk = Carve(disk, candidate, path, cancellationToken);
            string? openedAs;
            try
            {
                openedAs = opener(path);
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                problems.Add($"{candidate.Kind} at 0x{candidate.Offset:X}: {CaptureException.OneLine(e.Message)}");
                File.Delete(path);
                continue;
            }
            recorder.Step("hibernation image", $"{candidate.Kind} signature at disk offset 0x{candidate.Offset:X} (partition ends at 0x{candidate.End:X}): {candidate.Length} bytes copied out");
            return recorder.Evidence(name, uri(candidate), path, new FileInfo(path).Length, candidate.Length, Sha256OfFile(path), fromDisk, openedAs, null);
        }
        throw new CaptureException(candidates.Count == 0
            ? $"no hibernation image on {source}: no swsusp or hiberfil signature in its {writtenWhat}"
            : $"no hibernation image on {source} opens with our parsers: {string.Join("; ", problems)}");
    }

    /// <summary>SHA-256 of a whole file, read back from disk.</summary>
    public static string Sha256OfFile(string path)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        return Convert.ToHexStringLower(SHA256.HashData(file));
    }

    /// <summary>Partition extents (bytes) from a protective-MBR GPT or an MBR (primary entries); none when neither is there.</summary>
    internal static IReadOnlyList<(long Start, long End)> Partitions(FileStream disk)
    {
        const int Sector = 512;
        const int MaxGptEntries = 256;
        var result = new List<(long, long)>();
        byte[] head = new byte[Sector * 2];
        disk.Position = 0;
        if (disk.ReadAtLeast(head, head.Length, throwOnEndOfStream: false) < head.Length || head[510] != 0x55 || head[511] != 0xAA)
        {
            return result;
        }
        if (head[446 + 4] == 0xEE && head.AsSpan(Sector, 8).SequenceEqual("EFI PART"u8))
        {
            long entriesLba = BinaryPrimitives.ReadInt64LittleEndian(head.AsSpan(Sector + 72));
            uint count = Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(Sector + 80)), MaxGptEntries);
            uint entrySize = BinaryPrimitives.ReadUInt32LittleEndian(head.AsSpan(Sector + 84));
            if (entrySize is < 128 or > 1024 || entriesLba <= 0 || entriesLba > disk.Length / Sector)
            {
                return result;
            }
            byte[] entries = new byte[count * entrySize];
            disk.Position = entriesLba * Sector;
            int read = disk.ReadAtLeast(entries, entries.Length, throwOnEndOfStream: false);
            for (int i = 0; (i + 1) * entrySize <= read; i++)
            {
                ReadOnlySpan<byte> entry = entries.AsSpan((int)(i * entrySize), (int)entrySize);
                long first = BinaryPrimitives.ReadInt64LittleEndian(entry[32..]), last = BinaryPrimitives.ReadInt64LittleEndian(entry[40..]);
                if (entry[..16].ContainsAnyExcept((byte)0) && first > 0 && last >= first && last < disk.Length / Sector)
                {
                    result.Add((first * Sector, (last + 1) * Sector));
                }
            }
            return result;
        }
        for (int i = 0; i < 4; i++)
        {
            ReadOnlySpan<byte> entry = head.AsSpan(446 + (i * 16), 16);
            long first = BinaryPrimitives.ReadUInt32LittleEndian(entry[8..]), sectors = BinaryPrimitives.ReadUInt32LittleEndian(entry[12..]);
            if (entry[4] != 0 && sectors > 0)
            {
                result.Add((first * Sector, Math.Min(disk.Length, (first + sectors) * Sector)));
            }
        }
        return result;
    }
}
