namespace CloudMem.Cli;

/// <summary>Process exit codes.</summary>
internal enum ExitCode
{
    /// <summary>Done.</summary>
    Ok = 0,
    /// <summary>A question answered with nothing (fleet who-has: no capture has it).</summary>
    NotFound = 1,
    /// <summary>Bad input, bad usage, or an operation that could not be completed; one line on stderr says why.</summary>
    Error = 2,
    /// <summary>Cancelled by the user (Ctrl+C).</summary>
    Cancelled = 130,
}
