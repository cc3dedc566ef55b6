using System.Diagnostics;
using System.Globalization;
using CloudMem.Engine.Output;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Bench;

/// <summary>Read-speed figures for one capture, measured in one process.</summary>
public sealed record ReadBenchmarkResult(
    string File,
    string Format,
    long FileBytes,
    ulong CapturedBytes,
    double OpenMilliseconds,
    double SequentialFirstGBps,
    double SequentialCachedGBps,
    double RandomReadsPerSecond,
    int RandomReads,
    long PeakRssBytes,
    long PeakAnonymousBytes,
    ulong Checksum);

/// <summary>
/// Measures: open time, sequential read throughput through <see cref="IPhysicalMemory.Read"/> (first pass and a
/// second, page-cached pass), random 4 KiB reads per second, and the process's peak resident memory.
/// </summary>
public static class ReadBenchmark
{
    /// <summary>Runs the benchmark on one file.</summary>
    public static ReadBenchmarkResult Run(string path, int randomReads = 200_000, int seed = 12345)
    {
        var clock = Stopwatch.StartNew();
        using RunMappedMemory memory = CaptureOpener.Open(path);
        double openMs = clock.Elapsed.TotalMilliseconds;
        ulong captured = memory.TotalBytes();
        ulong checksum = 0;
        byte[] buffer = new byte[SequentialReader.DefaultBlockSize];

        double Sequential()
        {
            var watch = Stopwatch.StartNew();
            foreach (PhysicalRun run in memory.Runs)
            {
                for (ulong pa = run.PhysicalAddress; pa < run.End; pa += (ulong)buffer.Length)
                {
                    int count = (int)Math.Min((ulong)buffer.Length, run.End - pa);
                    int got = memory.Read(pa, buffer.AsSpan(0, count));
                    checksum += buffer[0] + (ulong)got;
                    memory.ReleaseResident(pa, (ulong)count);
                }
            }
            return captured / watch.Elapsed.TotalSeconds / 1e9;
        }

        double first = Sequential();
        double cached = Sequential();

        // Random page reads, spread over the runs by size.
        var random = new Random(seed);
        ulong[] starts = new ulong[memory.Runs.Count];
        ulong cumulative = 0;
        for (int i = 0; i < starts.Length; i++)
        {
            starts[i] = cumulative;
            cumulative += memory.Runs[i].Length / 4096;
        }
        var page = new byte[4096];
        var randomWatch = Stopwatch.StartNew();
        for (int n = 0; n < randomReads && cumulative > 0; n++)
        {
            ulong pick = (ulong)random.NextInt64((long)cumulative);
            int index = Array.BinarySearch(starts, pick);
            if (index < 0)
            {
                index = ~index - 1;
            }
            PhysicalRun run = memory.Runs[index];
            ulong pa = run.PhysicalAddress + (pick - starts[index]) * 4096;
            checksum += (ulong)memory.Read(pa, page) + page[17];
            if ((n & 0x3FF) == 0x3FF)
            {
                memory.ReleaseResident(0, memory.MaxAddress);
            }
        }
        double randomPerSecond = randomReads / randomWatch.Elapsed.TotalSeconds;
        (long rss, long anon) = PeakMemory();
        return new ReadBenchmarkResult(Path.GetFullPath(path), memory.Metadata.Format, new FileInfo(path).Length, captured, openMs,
            first, cached, randomPerSecond, randomReads, rss, anon, checksum);
    }

    /// <summary>Peak resident set (VmHWM) and current anonymous resident memory (RssAnon) of this process, from /proc.</summary>
    public static (long PeakRss, long Anonymous) PeakMemory()
    {
        long hwm = -1;
        long anon = -1;
        try
        {
            foreach (string line in File.ReadLines("/proc/self/status"))
            {
                if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
                {
                    hwm = ParseKb(line);
                }
                else if (line.StartsWith("RssAnon:", StringComparison.Ordinal))
                {
                    anon = ParseKb(line);
                }
            }
        }
        catch (IOException)
        {
        }
        return (hwm, anon);
    }

    private static long ParseKb(string line)
    {
        string[] parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        return parts.Length >= 2 && long.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out long kb) ? kb * 1024 : -1;
    }
}

/// <summary>Benchmark results of several captures.</summary>
public sealed record BenchmarkReport(string Machine, string Runtime, IReadOnlyList<ReadBenchmarkResult> Results) : IReport
{
    /// <inheritdoc />
    public IEnumerable<TableSection> ToTables()
    {
        yield return new TableSection($"Read benchmark ({Machine}; {Runtime})",
            ["file", "format", "captured", "open ms", "seq GB/s (1st)", "seq GB/s (cached)", "random 4K reads/s", "peak RSS MiB", "anon MiB"],
            Results.Select(r => (IReadOnlyList<string>)new[]
            {
                Path.GetFileName(r.File), r.Format, Hex.Size(r.CapturedBytes),
                r.OpenMilliseconds.ToString("0.0", CultureInfo.InvariantCulture),
                r.SequentialFirstGBps.ToString("0.00", CultureInfo.InvariantCulture),
                r.SequentialCachedGBps.ToString("0.00", CultureInfo.InvariantCulture),
                r.RandomReadsPerSecond.ToString("N0", CultureInfo.InvariantCulture),
                (r.PeakRssBytes / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture),
                (r.PeakAnonymousBytes / 1048576.0).ToString("0.0", CultureInfo.InvariantCulture),
            }).ToList());
    }

    /// <inheritdoc />
    public object ToJsonModel() => this;

    /// <inheritdoc />
    public IEnumerable<object>? ToJsonLines() => Results;
}
