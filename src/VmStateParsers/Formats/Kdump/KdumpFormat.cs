using System.Text;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Kdump;

/// <summary>makedumpfile / QEMU compressed kdump in the standard (seekable) layout.</summary>
internal sealed class KdumpFormat : CaptureFormat
{
    public override string Name => "kdump";

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength)
        => head.StartsWith(Encoding.ASCII.GetBytes(KdumpLayout.Signature)) || head.StartsWith(Encoding.ASCII.GetBytes(KdumpLayout.OldSignature))
           ? FormatProbeResult.Match
           : FormatProbeResult.NoMatch;

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits)
        => KdumpParser.Parse(file, limits, "kdump", new CaptureMetadata("kdump (makedumpfile compressed)"));
}
