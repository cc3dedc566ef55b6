using System.Globalization;

namespace CloudMem.Connectors.Core;

/// <summary>
/// The connector log: one timestamped line per event, every line passed through the <see cref="SecretScrubber"/>
/// before it is written (credentials, presigned URLs and signatures never reach it).
/// </summary>
/// <remarks>Thread-safe. Does not own the writers.</remarks>
public sealed class CaptureLog
{
    private readonly Lock _lock = new();
    private readonly TextWriter[] _writers;

    /// <summary>Creates a log over <paramref name="writers"/> (none: a log that only scrubs and forgets).</summary>
    public CaptureLog(SecretScrubber scrubber, params TextWriter[] writers)
    {
        Scrubber = scrubber;
        _writers = writers;
    }

    /// <summary>The scrubber every line goes through.</summary>
    public SecretScrubber Scrubber { get; }

    /// <summary>Writes one line.</summary>
    public void Info(string message) => Write("info", message);

    /// <summary>Writes one warning line.</summary>
    public void Warn(string message) => Write("warn", message);

    private void Write(string level, string message)
    {
        string line = string.Create(CultureInfo.InvariantCulture, $"{DateTimeOffset.UtcNow:yyyy-MM-ddTHH:mm:ss.fffZ} {level} {Scrubber.Scrub(message).ReplaceLineEndings(" ")}");
        lock (_lock)
        {
            foreach (TextWriter writer in _writers)
            {
                writer.WriteLine(line);
                writer.Flush();
            }
        }
    }
}
