using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Raw;

/// <summary>
/// Raw (padded) memory: file offset equals physical address. No header, so it is the fallback after every
/// other probe has said no.
/// </summary>
internal sealed class RawFormat : CaptureFormat
{
    /// <summary>A capture holds at least one page.</summary>
    public const int MinimumSize = 4096;

    /// <summary>The format's short name (also what its writer is verified as).</summary>
    public const string Id = "raw";

    public override string Name => Id;

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength) => FormatProbeResult.Match;

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits)
    {
        if (file.Length < MinimumSize)
        {
            throw Fail.At("raw", "file", 0, $"{file.Length} bytes is smaller than one page ({MinimumSize}): not a memory capture, and no known format header was found");
        }
        var builder = new RunMapBuilder("raw", file.Length, limits);
        builder.Add(new PhysicalRun(0, (ulong)file.Length, 0), "file", 0);
        var metadata = new CaptureMetadata("raw (padded: file offset = physical address)");
        metadata.Add("fileSize", file.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        if (file.Length % 4096 != 0)
        {
            metadata.Warnings.Add($"file size 0x{file.Length:X} is not a multiple of 4096: a raw image is usually whole pages (truncated copy?)");
        }
        if (Hibernation.HibernationFormat.IsWipedHeader(file.Span(0, MinimumSize)))
        {
            metadata.Warnings.Add("the first page is all zero; if this file is a hiberfil.sys, it is not raw memory: " + Hibernation.HibernationFormat.WipedHeaderMessage);
        }
        return new ParsedCapture(file, builder.ToArray(), null, metadata);
    }
}
