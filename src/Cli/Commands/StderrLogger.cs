using CloudMem.Engine.Core;
using Microsoft.Extensions.Logging;

namespace CloudMem.Cli.Commands;

/// <summary>
/// The engine's diagnostics on stderr as "cloudmem: MESSAGE" lines, at Debug and above when CLOUDMEM_TIMING=1
/// (timings of kernel discovery), otherwise warnings and above only.
/// </summary>
internal sealed class StderrLogger(LogLevel minimum) : ILogger
{
    /// <summary>The logger the commands use.</summary>
    public static ILogger FromEnvironment()
        => new StderrLogger(Environment.GetEnvironmentVariable("CLOUDMEM_TIMING") == "1" ? LogLevel.Debug : LogLevel.Warning);

    public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => logLevel >= minimum && logLevel != LogLevel.None;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        if (IsEnabled(logLevel))
        {
            Console.Error.WriteLine($"cloudmem: {formatter(state, exception)}");
        }
    }
}

/// <summary>With CLOUDMEM_TIMING=1: logs each progress stage's bytes, time and GB/s when it completes (the scan
/// throughput figures of docs/BENCHMARKS.md), and passes every report on to <paramref name="inner"/>.</summary>
internal sealed class TimingProgress(IProgressSink? inner, ILogger logger) : IProgressSink
{
    private readonly Lock _lock = new();
    private readonly Dictionary<string, long> _started = new(StringComparer.Ordinal);

    /// <summary>A timing sink over <paramref name="inner"/> when CLOUDMEM_TIMING=1, else <paramref name="inner"/>.</summary>
    public static IProgressSink? Wrap(IProgressSink? inner, ILogger logger)
        => Environment.GetEnvironmentVariable("CLOUDMEM_TIMING") == "1" ? new TimingProgress(inner, logger) : inner;

    public void Report(string stage, long done, long total)
    {
        inner?.Report(stage, done, total);
        lock (_lock)
        {
            long now = System.Diagnostics.Stopwatch.GetTimestamp();
            if (!_started.TryGetValue(stage, out long start))
            {
                _started[stage] = now;
                return;
            }
            if (done >= total && total > 0)
            {
                double seconds = System.Diagnostics.Stopwatch.GetElapsedTime(start, now).TotalSeconds;
                logger.LogDebug("timing: {Stage}: {Bytes:N0} bytes in {Milliseconds:0} ms = {Rate:0.00} GB/s ({Threads} scan threads)",
                    stage, total, seconds * 1000, total / Math.Max(seconds, 1e-9) / 1e9, CloudMem.VmStateParsers.ParallelScan.DefaultDegreeOfParallelism);
                _started.Remove(stage);
            }
        }
    }
}

/// <summary>With CLOUDMEM_TIMING=1: logs the time from process start to the command, then each phase of it.</summary>
internal readonly struct PhaseTimer
{
    private readonly ILogger? _logger;
    private readonly System.Diagnostics.Stopwatch? _watch;

    private PhaseTimer(ILogger logger)
    {
        _logger = logger;
        _watch = System.Diagnostics.Stopwatch.StartNew();
        double sinceStart = (DateTime.Now - System.Diagnostics.Process.GetCurrentProcess().StartTime).TotalMilliseconds;
        logger.LogDebug("phase: process start to command {Ms:F1} ms (runtime start-up, argument parsing)", sinceStart);
    }

    /// <summary>A timer that logs when <paramref name="logger"/> takes debug messages, else one that does nothing.</summary>
    public static PhaseTimer Start(ILogger logger) => logger.IsEnabled(LogLevel.Debug) ? new PhaseTimer(logger) : default;

    /// <summary>Logs the time since the last mark as <paramref name="phase"/>.</summary>
    public void Mark(string phase)
    {
        if (_watch is null)
        {
            return;
        }
        _logger!.LogDebug("phase: {Phase} {Ms:F1} ms", phase, _watch.Elapsed.TotalMilliseconds);
        _watch.Restart();
    }
}
