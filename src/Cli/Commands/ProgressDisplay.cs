using System.Diagnostics;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;

namespace CloudMem.Cli.Commands;

/// <summary>
/// One status line on a terminal's stderr for steps that take more than a second (scans, conversions): stage,
/// percentage and amount, redrawn at most five times a second and erased at the end. Nothing when stderr is not a
/// terminal (piped, redirected, CI), so output files and logs never contain it.
/// </summary>
internal sealed class ProgressDisplay : IProgressSink, IDisposable
{
    private static readonly TimeSpan s_delay = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan s_interval = TimeSpan.FromMilliseconds(200);
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly TextWriter _writer;
    private readonly Lock _lock = new();
    private TimeSpan _last = TimeSpan.MinValue;
    private int _width;

    private ProgressDisplay(TextWriter writer) => _writer = writer;

    /// <summary>A display on stderr when it is a terminal, else null.</summary>
    public static ProgressDisplay? ForTerminal()
        => Console.IsErrorRedirected || Environment.GetEnvironmentVariable("TERM") is null or "dumb" ? null : new ProgressDisplay(Console.Error);

    /// <inheritdoc />
    public void Report(string stage, long done, long total)
    {
        TimeSpan now = _clock.Elapsed;
        if (now < s_delay || now - _last < s_interval)
        {
            return;
        }
        lock (_lock)
        {
            _last = now;
            string amount = total == 0 && done == 0 ? "" : total > 0
                ? $"{100.0 * Math.Min(done, total) / total,5:0.0}% ({Hex.Size((ulong)Math.Max(0, done))} of {Hex.Size((ulong)total)})"
                : Hex.Size((ulong)Math.Max(0, done));
            string line = amount.Length == 0 ? $"{stage}  {now.TotalSeconds:0}s" : $"{stage}: {amount}  {now.TotalSeconds:0}s";
            _writer.Write("\r" + line.PadRight(_width));
            _width = line.Length;
        }
    }

    /// <summary>Erases the line.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_width > 0)
            {
                _writer.Write("\r" + new string(' ', _width) + "\r");
                _width = 0;
            }
        }
    }
}
