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
