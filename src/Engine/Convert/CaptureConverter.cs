using System.Buffers.Binary;
using System.Diagnostics;
using System.Security.Cryptography;
using CloudMem.Engine.Capture;
using CloudMem.Engine.Output;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Convert;

/// <summary>Target formats of <c>cloudmem convert</c>.</summary>
public enum ConvertTarget
{
    /// <summary>Padded raw: file offset = physical address, holes are zero (written sparse).</summary>
    Raw,
    /// <summary>LiME: one record per contiguous stretch of captured memory.</summary>
    Lime,
}

/// <summary>Progress of a conversion: phase ("write", "verify", "hash"), bytes done, bytes in the phase.</summary>
public readonly record struct ConvertProgress(string Phase, ulong Done, ulong Total);

/// <summary>What a conversion wrote and how it was checked.</summary>
public sealed record ConvertResult(
    string Source,
    string Output,
    string Target,
    long OutputBytes,
    ulong DataBytes,
    int Records,
    ulong UnreadableBytes,
    bool Verified,
    string Sha256,
    double Seconds) : IReport
{
    /// <inheritdoc />
    public IEnumerable<TableSection> ToTables()
    {
        yield return new TableSection("Conversion", ["", ""],
        [
            new[] { "source", Source },
            new[] { "output", Output },
            new[] { "format", Target },
            new[] { "output size", $"{Hex.Dec(OutputBytes)} ({Hex.Size((ulong)OutputBytes)})" },
            new[] { "memory written", $"{Hex.Dec(DataBytes)} bytes in {Records} {(Target == "lime" ? "records" : "runs")}" },
            new[] { "unreadable", UnreadableBytes == 0 ? "none" : $"{Hex.Dec(UnreadableBytes)} bytes written as zero (undecodable pages)" },
            new[] { "verified", Verified ? "yes: every captured byte read back from the output equals the source" : "NO" },
            new[] { "sha256", Sha256 },
            new[] { "seconds", Seconds.ToString("0.00", System.Globalization.CultureInfo.InvariantCulture) },
        ]);
    }

    /// <inheritdoc />
    public object ToJsonModel() => this;
}

/// <summary>Raised when a conversion cannot be done; the message is one line.</summary>
public sealed class ConvertException(string message) : Exception(message);

/// <summary>
/// Writes a capture's physical memory in another format. Never overwrites: it writes "OUT.partial" (created new),
/// verifies it by reading every captured byte back and comparing it with the source, hashes it, and only then
/// renames it to OUT. A failed or cancelled conversion removes its own partial file and nothing else.
/// </summary>
public static class CaptureConverter
{
    private const uint LimeMagic = 0x4C694D45;

    /// <summary>Converts <paramref name="memory"/> (opened from <paramref name="sourcePath"/>) to <paramref name="outputPath"/>.</summary>
    public static ConvertResult Convert(string sourcePath, IPhysicalMemory memory, ConvertTarget target, string outputPath,
        IProgress<ConvertProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        var clock = Stopwatch.StartNew();
        string output = Path.GetFullPath(outputPath);
        if (File.Exists(output) || Directory.Exists(output))
        {
            throw new ConvertException($"{output}: already exists; convert never overwrites (choose another --out)");
        }
        if (string.Equals(output, Path.GetFullPath(sourcePath), StringComparison.Ordinal))
        {
            throw new ConvertException($"{output}: is the source capture");
        }
        string partial = output + ".partial";
        FileStream stream;
        try
        {
            stream = new FileStream(partial, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 20);
        }
        catch (IOException e)
        {
            throw new ConvertException($"{partial}: cannot create ({e.Message.TrimEnd('.')})");
        }
        catch (UnauthorizedAccessException)
        {
            throw new ConvertException($"{partial}: cannot create (permission denied)");
        }
        bool done = false;
        try
        {
            ulong total = memory.TotalBytes();
            (ulong unreadable, int records) = target == ConvertTarget.Raw
                ? WriteRaw(memory, stream, total, progress, cancellationToken)
                : WriteLime(memory, stream, total, progress, cancellationToken);
            stream.Flush(flushToDisk: true);
            stream.Dispose();

            Verify(memory, partial, target, total, progress, cancellationToken);
            string sha256 = HashFile(partial, progress, cancellationToken);
            long size = new FileInfo(partial).Length;
            try
            {
                File.Move(partial, output, overwrite: false);
            }
            catch (IOException e)
            {
                throw new ConvertException($"{output}: cannot rename the verified {Path.GetFileName(partial)} into place ({e.Message.TrimEnd('.')})");
            }
            done = true;
            return new ConvertResult(Path.GetFullPath(sourcePath), output, target.ToString().ToLowerInvariant(), size, total, records, unreadable, true, sha256, clock.Elapsed.TotalSeconds);
        }
        catch (IOException e)
        {
            throw new ConvertException($"{partial}: write failed ({e.Message.TrimEnd('.')})");
        }
        finally
        {
            stream.Dispose();
            if (!done)
            {
                File.Delete(partial);
            }
        }
    }

    private static (ulong Unreadable, int Records) WriteRaw(IPhysicalMemory memory, FileStream stream, ulong total, IProgress<ConvertProgress>? progress, CancellationToken ct)
    {
        // Sparse: set the length, then write only the captured runs; holes stay unallocated zeros.
        stream.SetLength((long)memory.MaxAddress);
        ulong written = 0;
        ulong unreadable = SequentialReader.ForEachBlock(memory, (pa, data) =>
        {
            stream.Position = (long)pa;
            stream.Write(data);
            written += (ulong)data.Length;
            progress?.Report(new ConvertProgress("write", written, total));
            return true;
        }, cancellationToken: ct);
        return (unreadable, memory.Runs.Count);
    }

    private static (ulong Unreadable, int Records) WriteLime(IPhysicalMemory memory, FileStream stream, ulong total, IProgress<ConvertProgress>? progress, CancellationToken ct)
    {
        // One record per stretch of adjacent runs; undecodable pages inside a stretch are written as zero.
        int records = 0;
        ulong written = 0;
        ulong unreadable = 0;
        Span<byte> header = stackalloc byte[32];
        IReadOnlyList<PhysicalRun> runs = memory.Runs;
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
            header.Clear();
            BinaryPrimitives.WriteUInt32LittleEndian(header, LimeMagic);
            BinaryPrimitives.WriteUInt32LittleEndian(header[4..], 1);
            BinaryPrimitives.WriteUInt64LittleEndian(header[8..], start);
            BinaryPrimitives.WriteUInt64LittleEndian(header[16..], end - 1);
            stream.Write(header);
            records++;
            long dataStart = stream.Position;
            var stretch = new StretchMemory(memory, start, end);
            unreadable += SequentialReader.ForEachBlock(stretch, (pa, data) =>
            {
                stream.Position = dataStart + (long)(pa - start);
                stream.Write(data);
                written += (ulong)data.Length;
                progress?.Report(new ConvertProgress("write", written, total));
                return true;
            }, cancellationToken: ct);
            // Skipped (undecodable) pages at the end of a stretch still need their zero bytes.
            stream.SetLength(Math.Max(stream.Length, dataStart + (long)(end - start)));
            stream.Position = dataStart + (long)(end - start);
            i = j;
        }
        return (unreadable, records);
    }

    private static void Verify(IPhysicalMemory memory, string partial, ConvertTarget target, ulong total, IProgress<ConvertProgress>? progress, CancellationToken ct)
    {
        ulong checkedBytes = 0;
        using RunMappedMemory written = target == ConvertTarget.Lime
            ? CaptureOpener.Open(partial)
            : CaptureOpener.OpenAs(partial, "raw");
        byte[] buffer = new byte[SequentialReader.DefaultBlockSize];
        SequentialReader.ForEachBlock(memory, (pa, data) =>
        {
            Span<byte> back = buffer.AsSpan(0, data.Length);
            if (written.Read(pa, back) != data.Length || !back.SequenceEqual(data))
            {
                throw new ConvertException($"{partial}: verification failed: physical 0x{pa:X}+0x{data.Length:X} reads back different from the source; the partial file is removed");
            }
            written.ReleaseResident(pa, (ulong)data.Length);
            checkedBytes += (ulong)data.Length;
            progress?.Report(new ConvertProgress("verify", checkedBytes, total));
            return true;
        }, cancellationToken: ct);
    }

    private static string HashFile(string path, IProgress<ConvertProgress>? progress, CancellationToken ct)
    {
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.SequentialScan);
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        byte[] buffer = new byte[4 << 20];
        ulong total = (ulong)file.Length;
        ulong done = 0;
        int read;
        while ((read = file.Read(buffer)) > 0)
        {
            ct.ThrowIfCancellationRequested();
            hash.AppendData(buffer, 0, read);
            done += (ulong)read;
            progress?.Report(new ConvertProgress("hash", done, total));
        }
        return System.Convert.ToHexStringLower(hash.GetHashAndReset());
    }

    /// <summary>A view of one stretch of a capture (for writing one LiME record).</summary>
    private sealed class StretchMemory(IPhysicalMemory inner, ulong start, ulong end) : IPhysicalMemory, IDirectSpanAccess
    {
        private readonly PhysicalRun[] _runs = inner.Runs.Where(r => r.PhysicalAddress >= start && r.End <= end).ToArray();

        public IReadOnlyList<PhysicalRun> Runs => _runs;
        public ulong MaxAddress => end;
        public string Description => inner.Description;
        public int Read(ulong physicalAddress, Span<byte> destination) => inner.Read(physicalAddress, destination);
        public ReadOnlySpan<byte> GetDirectSpan(ulong physicalAddress, int maxLength)
            => inner is IDirectSpanAccess d ? d.GetDirectSpan(physicalAddress, maxLength) : ReadOnlySpan<byte>.Empty;
        public void ReleaseResident(ulong physicalAddress, ulong length) => (inner as IDirectSpanAccess)?.ReleaseResident(physicalAddress, length);
        public void Dispose()
        {
        }
    }
}
