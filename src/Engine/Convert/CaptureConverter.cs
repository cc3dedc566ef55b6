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

/// <summary>Progress of a conversion: phase ("write" or "verify"), bytes done, bytes in the phase.</summary>
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
/// hashing the file's bytes in order as they are written, verifies it by reading every captured byte back through
/// the reader of the target format and comparing it with the source, and only then renames it to OUT. A failed or cancelled conversion removes its own partial file and nothing else.
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
            using var writer = new HashingWriter(stream);
            (ulong unreadable, int records) = target == ConvertTarget.Raw
                ? WriteRaw(memory, writer, total, progress, cancellationToken)
                : WriteLime(memory, writer, total, progress, cancellationToken);
            string sha256 = writer.Finish();
            stream.Flush(flushToDisk: true);
            long size = stream.Length;
            stream.Dispose();

            Verify(memory, partial, target, total, progress, cancellationToken);
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

    private static (ulong Unreadable, int Records) WriteRaw(IPhysicalMemory memory, HashingWriter writer, ulong total, IProgress<ConvertProgress>? progress, CancellationToken ct)
    {
        // Sparse: set the length, then write only the captured runs; holes stay unallocated zeros.
        writer.SetLength((long)memory.MaxAddress);
        ulong written = 0;
        ulong unreadable = SequentialReader.ForEachBlock(memory, (pa, data) =>
        {
            writer.WriteAt((long)pa, data);
            written += (ulong)data.Length;
            progress?.Report(new ConvertProgress("write", written, total));
            return true;
        }, cancellationToken: ct);
        return (unreadable, memory.Runs.Count);
    }

    private static (ulong Unreadable, int Records) WriteLime(IPhysicalMemory memory, HashingWriter writer, ulong total, IProgress<ConvertProgress>? progress, CancellationToken ct)
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
            long dataStart = writer.Position + header.Length;
            writer.WriteAt(writer.Position, header);
            records++;
            var stretch = new StretchMemory(memory, start, end);
            unreadable += SequentialReader.ForEachBlock(stretch, (pa, data) =>
            {
                writer.WriteAt(dataStart + (long)(pa - start), data);
                written += (ulong)data.Length;
                progress?.Report(new ConvertProgress("write", written, total));
                return true;
            }, cancellationToken: ct);
            // Skipped (undecodable) pages at the end of a stretch still need their zero bytes.
            writer.SetLength(dataStart + (long)(end - start));
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

    /// <summary>
    /// Writes at ascending offsets and hashes the file's bytes in order as it goes, zeros of skipped (sparse)
    /// ranges included, so the SHA-256 of a sparse raw file costs no second pass over its holes.
    /// </summary>
    private sealed class HashingWriter(FileStream stream) : IDisposable
    {
        private static readonly byte[] s_zeros = new byte[1 << 20];
        private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        private long _hashed;
        private long _length;

        public long Position => _hashed;

        public void SetLength(long length)
        {
            if (length > _length)
            {
                stream.SetLength(length);
                _length = length;
            }
        }

        public void WriteAt(long offset, ReadOnlySpan<byte> data)
        {
            if (offset < _hashed)
            {
                throw new InvalidOperationException("writes must go forward");
            }
            HashZerosTo(offset);
            stream.Position = offset;
            stream.Write(data);
            _hash.AppendData(data);
            _hashed = offset + data.Length;
            _length = Math.Max(_length, _hashed);
        }

        public string Finish()
        {
            HashZerosTo(_length);
            return System.Convert.ToHexStringLower(_hash.GetHashAndReset());
        }

        private void HashZerosTo(long offset)
        {
            while (_hashed < offset)
            {
                int count = (int)Math.Min(s_zeros.Length, offset - _hashed);
                _hash.AppendData(s_zeros, 0, count);
                _hashed += count;
            }
        }

        public void Dispose() => _hash.Dispose();
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
