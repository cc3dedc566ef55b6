namespace CloudMem.Connectors.Core;

/// <summary>
/// A capture or isolation could not be done: a failed preflight check, a refused or failed provider call, evidence that
/// does not verify. The message is one line saying what failed and why (no stack trace, no secret); the CLI prints it
/// and exits with code 2.
/// </summary>
public class CaptureException : Exception
{
    /// <summary>Creates the exception; line breaks in <paramref name="message"/> are flattened.</summary>
    public CaptureException(string message, Exception? inner = null)
        : base(OneLine(message), inner)
    {
    }

    internal static string OneLine(string text) => text.ReplaceLineEndings(" ").Trim();
}

/// <summary>Something we wait for (a guest command, a snapshot, an export) did not finish in time.</summary>
public sealed class CaptureTimeoutException : CaptureException
{
    /// <summary>Creates "<paramref name="what"/> did not finish within <paramref name="timeout"/> (last state: <paramref name="lastState"/>)".</summary>
    public CaptureTimeoutException(string what, TimeSpan timeout, string? lastState)
        : base($"{what} did not finish within {Resilience.Describe(timeout)} (last state: {lastState ?? "unknown"})")
    {
        What = what;
        Timeout = timeout;
        LastState = lastState;
    }

    /// <summary>What was awaited.</summary>
    public string What { get; }

    /// <summary>The overall limit that ran out.</summary>
    public TimeSpan Timeout { get; }

    /// <summary>The last state observed before giving up.</summary>
    public string? LastState { get; }
}
