namespace CloudMem.VmStateParsers.Writing;

/// <summary>
/// Writes physical memory in one file format. Writers only write: the converter (CloudMem.Engine.Convert.CaptureConverter) owns the
/// never-overwrite rule, the temporary directory, verification through our own reader and the final rename.
/// </summary>
public interface ICaptureWriter
{
    /// <summary>The name used with <c>--to</c>, e.g. "raw".</summary>
    string Name { get; }

    /// <summary>One line for help text.</summary>
    string Description { get; }

    /// <summary>Variants accepted with <c>--variant</c> (empty when there are none); the first is the default.</summary>
    IReadOnlyList<string> Variants => [];

    /// <summary>The reader format to verify the output with (<see cref="CaptureOpener.FormatNames"/>), or null to detect it.</summary>
    string? VerifyAs => null;

    /// <summary>Writes <paramref name="memory"/> into files created through <paramref name="context"/>.</summary>
    WriterStatistics Write(IPhysicalMemory memory, WriterContext context);
}

/// <summary>What a writer reports back.</summary>
/// <param name="Records">Runs, records or blocks written (format-specific unit).</param>
/// <param name="UnreadableBytes">Captured bytes that could not be read from the source and were written as zero.</param>
public readonly record struct WriterStatistics(int Records, ulong UnreadableBytes);

/// <summary>Progress of a conversion: phase ("write" or "verify"), bytes done, bytes in the phase.</summary>
public readonly record struct ConvertProgress(string Phase, ulong Done, ulong Total);

/// <summary>Raised when a conversion cannot be done; the message is one line.</summary>
public sealed class ConvertException(string message) : Exception(message);
