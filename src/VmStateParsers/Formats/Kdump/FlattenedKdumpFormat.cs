using System.Text;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Kdump;

/// <summary>
/// makedumpfile's flattened stream (what QEMU writes for kdump-zlib/lzo/snappy): read in place through an index of
/// its records, then parsed as a standard kdump. No rearranged copy is written.
/// </summary>
internal sealed class FlattenedKdumpFormat : CaptureFormat
{
    public static readonly byte[] Signature = Encoding.ASCII.GetBytes("makedumpfile\0\0\0\0");

    public override string Name => "kdump-flattened";

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength)
        => head.StartsWith(Signature) ? FormatProbeResult.Match : FormatProbeResult.NoMatch;

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits)
    {
        FlattenedSource source = FlattenedSource.Build(file, limits);
        try
        {
            var metadata = new CaptureMetadata("kdump (makedumpfile flattened)");
            metadata.Add("flattenedRecords", source.RecordCount.ToString(System.Globalization.CultureInfo.InvariantCulture));
            metadata.Add("reassembledLength", $"0x{source.Length:X}");
            if (source.MissingEndMarker)
            {
                metadata.Warnings.Add($"file is truncated: the stream ends without its end record after {source.RecordCount} records; pages stored after that read as holes");
            }
            Span<byte> signature = stackalloc byte[8];
            if (source.Read(0, signature) != 8 || !(signature.SequenceEqual("KDUMP   "u8) || signature.SequenceEqual("DISKDUMP"u8)))
            {
                throw Fail.At("kdump-flattened", "reassembled disk_dump_header.signature", 0x1000, "the records do not rebuild a KDUMP header at offset 0");
            }
            return KdumpParser.Parse(source, limits, "kdump-flattened", metadata);
        }
        catch
        {
            source.DetachAndDispose();
            throw;
        }
    }
}
