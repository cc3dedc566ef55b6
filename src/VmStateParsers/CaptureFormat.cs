using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers;

/// <summary>What a format's probe says about the first bytes of a file.</summary>
public enum FormatProbeResult
{
    /// <summary>Not this format.</summary>
    NoMatch,
    /// <summary>This format.</summary>
    Match,
    /// <summary>This format, but the memory is in a companion file.</summary>
    NeedsCompanion,
}

/// <summary>What a parser produced: a validated run table and how to read it.</summary>
internal sealed record ParsedCapture(IByteSource Source, PhysicalRun[] Runs, IPageDecoder? Decoder, CaptureMetadata Metadata);

/// <summary>
/// One capture format: a content probe plus a parser whose only job is to build a validated run table.
/// </summary>
internal abstract class CaptureFormat
{
    /// <summary>Bytes of the file's start handed to <see cref="Probe(ReadOnlySpan{byte}, long)"/> (a span over the mapping, nothing is copied):
    /// 1 MiB plus a page, so a probe can find a header page of a partition that starts within the first MiB of a disk image.</summary>
    public const int ProbeBytes = (1024 * 1024) + 4096;

    /// <summary>Short name, e.g. "lime".</summary>
    public abstract string Name { get; }

    /// <summary>Decides by content whether the file is this format.</summary>
    public abstract FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength);

    /// <summary>
    /// Decides with the file's path too, for formats whose structure is in a companion file (a .vmem has no header;
    /// its sibling .vmss/.vmsn describes it). The path only locates companions by the capture's naming rule; what
    /// they are is still decided by their content. Defaults to the content probe.
    /// </summary>
    public virtual FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength, string path) => Probe(head, fileLength);

    /// <summary>Parses the file. Throws <see cref="FormatErrorException"/> on structural problems.</summary>
    /// <remarks>On success the returned source owns <paramref name="file"/>; on failure the caller disposes it.</remarks>
    public abstract ParsedCapture Parse(IByteSource file, ParserLimits limits);
}
