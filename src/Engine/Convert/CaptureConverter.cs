using System.Diagnostics;
using System.Globalization;
using CloudMem.Engine.Output;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Formats.CrashDump;
using CloudMem.VmStateParsers.Formats.Hibernation;
using CloudMem.VmStateParsers.Formats.HyperV;
using CloudMem.VmStateParsers.Formats.Lime;
using CloudMem.VmStateParsers.Formats.Raw;
using CloudMem.VmStateParsers.Formats.Swsusp;
using CloudMem.VmStateParsers.Formats.Vmware;
using CloudMem.VmStateParsers.Writing;

namespace CloudMem.Engine.Convert;

/// <summary>One file a conversion produced.</summary>
public sealed record ConvertedFile(string Path, long Bytes, string Sha256);

/// <summary>What a conversion wrote and how it was checked.</summary>
public sealed record ConvertResult(
    string Source,
    string Output,
    string Target,
    string? Variant,
    long OutputBytes,
    ulong DataBytes,
    int Records,
    ulong UnreadableBytes,
    bool Verified,
    string Sha256,
    IReadOnlyList<ConvertedFile> Files,
    double Seconds) : IReport
{
    /// <summary>What the writer wants the user to know about the output (see <see cref="WriterContext.Notes"/>).</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];

    /// <inheritdoc />
    public IEnumerable<TableSection> ToTables()
    {
        var rows = new List<IReadOnlyList<string>>
        {
            new[] { "source", Source },
            new[] { "format", Variant is null ? Target : $"{Target} ({Variant})" },
            new[] { "memory written", $"{Hex.Dec(DataBytes)} bytes ({Hex.Size(DataBytes)}) in {Records} records" },
            new[] { "unreadable", UnreadableBytes == 0 ? "none" : $"{Hex.Dec(UnreadableBytes)} bytes written as zero (undecodable pages)" },
            new[] { "verified", Verified ? "yes: every captured byte read back through our reader equals the source" : "NO" },
            new[] { "seconds", Seconds.ToString("0.00", CultureInfo.InvariantCulture) },
        };
        rows.AddRange(Notes.Select(n => (IReadOnlyList<string>)new[] { "note", n }));
        yield return new TableSection("Conversion", ["", ""], rows);
        yield return new TableSection("Files written", ["file", "bytes", "sha256"],
            Files.Select(f => (IReadOnlyList<string>)new[] { f.Path, Hex.Dec(f.Bytes), f.Sha256 }).ToList());
    }

    /// <inheritdoc />
    public object ToJsonModel() => this;
}

/// <summary>
/// Writes a capture's physical memory in another format through an <see cref="ICaptureWriter"/>. Never overwrites:
/// every file is first written into a new hidden directory beside the output (hashed as it is written), the main
/// output is then re-opened with our own reader and every captured byte compared with the source, and only then are
/// the files moved into place. A failed or cancelled conversion removes its own temporary files and nothing else.
/// </summary>
public static class CaptureConverter
{
    private static readonly List<ICaptureWriter> s_writers =
    [
        new RawWriter(), new LimeWriter(), new DmpWriter(), new VmrsWriter(), new HiberfilWriter(),
        new VmwareWriter("vmsn", "snapshot"), new VmwareWriter("vmss", "suspend"), new SwsuspWriter(),
    ];

    /// <summary>The registered writers, by <see cref="ICaptureWriter.Name"/>.</summary>
    public static IReadOnlyList<ICaptureWriter> Writers => s_writers;

    /// <summary>Finds a writer by name.</summary>
    public static ICaptureWriter? Find(string name) => s_writers.Find(w => string.Equals(w.Name, name, StringComparison.OrdinalIgnoreCase));

    /// <summary>Converts <paramref name="memory"/> (opened from <paramref name="sourcePath"/>) to <paramref name="outputPath"/>.</summary>
    public static ConvertResult Convert(string sourcePath, IPhysicalMemory memory, string target, string outputPath,
        string? variant = null, IProgress<ConvertProgress>? progress = null, CancellationToken cancellationToken = default)
    {
        ICaptureWriter writer = Find(target)
            ?? throw new ConvertException($"unknown target format '{target}' (known: {string.Join(", ", s_writers.Select(w => w.Name))})");
        if (variant is not null && !writer.Variants.Contains(variant, StringComparer.OrdinalIgnoreCase))
        {
            throw new ConvertException(writer.Variants.Count == 0
                ? $"{writer.Name} has no variants"
                : $"{writer.Name} variant must be one of {string.Join(", ", writer.Variants)}, not '{variant}'");
        }
        var clock = Stopwatch.StartNew();
        string output = Path.GetFullPath(outputPath);
        string directory = Path.GetDirectoryName(output)!;
        if (File.Exists(output) || Directory.Exists(output))
        {
            throw new ConvertException($"{output}: already exists; convert never overwrites (choose another --out)");
        }
        if (string.Equals(output, Path.GetFullPath(sourcePath), StringComparison.Ordinal))
        {
            throw new ConvertException($"{output}: is the source capture");
        }
        if (!Directory.Exists(directory))
        {
            throw new ConvertException($"{directory}: no such directory");
        }
        string temporary = Path.Combine(directory, $".{Path.GetFileName(output)}.partial-{Guid.NewGuid().ToString("N")[..8]}");
        try
        {
            Directory.CreateDirectory(temporary);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new ConvertException($"{directory}: cannot write here ("
                + (e is UnauthorizedAccessException ? "permission denied" : "the directory does not accept new files: read-only or a kernel file system") + ")");
        }
        bool done = false;
        ulong total = memory.TotalBytes();
        var context = new WriterContext(temporary, Path.GetFileName(output), variant, total, progress, cancellationToken);
        try
        {
            WriterStatistics statistics = writer.Write(memory, context);
            foreach (OutputFile file in context.Files)
            {
                file.Complete();
            }
            Verify(memory, Path.Combine(temporary, context.MainName), writer.VerifyAs, total, progress, cancellationToken);
            var finalPaths = context.Files.Select(f => Path.Combine(directory, f.Name)).ToList();
            string? clash = finalPaths.FirstOrDefault(p => File.Exists(p) || Directory.Exists(p));
            if (clash is not null)
            {
                throw new ConvertException($"{clash}: already exists; convert never overwrites (choose another --out)");
            }
            var files = new List<ConvertedFile>();
            foreach (OutputFile file in context.Files)
            {
                string final = Path.Combine(directory, file.Name);
                File.Move(file.Path, final, overwrite: false);
                files.Add(new ConvertedFile(final, new FileInfo(final).Length, file.Sha256));
            }
            done = true;
            ConvertedFile main = files[0];
            return new ConvertResult(Path.GetFullPath(sourcePath), main.Path, writer.Name, variant, main.Bytes, total, statistics.Records,
                statistics.UnreadableBytes, true, main.Sha256, files, clock.Elapsed.TotalSeconds) { Notes = context.Notes };
        }
        catch (IOException e)
        {
            throw new ConvertException($"{output}: write failed ({e.Message.TrimEnd('.')})");
        }
        finally
        {
            foreach (OutputFile file in context.Files)
            {
                file.Dispose();
            }
            if (!done)
            {
                foreach (OutputFile file in context.Files)
                {
                    File.Delete(file.Path);
                }
            }
            try
            {
                Directory.Delete(temporary, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    private static void Verify(IPhysicalMemory memory, string path, string? format, ulong total, IProgress<ConvertProgress>? progress, CancellationToken ct)
    {
        ulong checkedBytes = 0;
        RunMappedMemory written;
        try
        {
            written = format is null ? CaptureOpener.Open(path) : CaptureOpener.OpenAs(path, format);
        }
        catch (DumpFormatException e)
        {
            throw new ConvertException($"verification failed: our reader cannot open what was written ({e.Error}); nothing was kept");
        }
        using (written)
        {
            byte[] buffer = new byte[SequentialReader.DefaultBlockSize];
            SequentialReader.ForEachBlock(memory, (pa, data) =>
            {
                Span<byte> back = buffer.AsSpan(0, data.Length);
                if (written.Read(pa, back) != data.Length || !back.SequenceEqual(data))
                {
                    throw new ConvertException($"verification failed: physical 0x{pa:X}+0x{data.Length:X} reads back different from the source; nothing was kept");
                }
                written.ReleaseResident(pa, (ulong)data.Length);
                checkedBytes += (ulong)data.Length;
                progress?.Report(new ConvertProgress("verify", checkedBytes, total));
                return true;
            }, cancellationToken: ct);
        }
    }
}
