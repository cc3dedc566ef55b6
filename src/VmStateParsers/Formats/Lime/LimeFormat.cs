using System.Buffers.Binary;
using System.Globalization;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Lime;

/// <summary>LiME (format=lime): a sequence of {32-byte header, range data} records.</summary>
internal sealed class LimeFormat : CaptureFormat
{
    private const string FormatName = "LiME";

    /// <summary>The format's short name (also what its writer is verified as).</summary>
    public const string Id = "lime";

    public override string Name => Id;

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength)
        => head.Length >= LimeLayout.HeaderSize
           && BinaryPrimitives.ReadUInt32LittleEndian(head) == LimeLayout.Magic
           ? FormatProbeResult.Match
           : FormatProbeResult.NoMatch;

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits)
    {
        var builder = new RunMapBuilder(FormatName, file.Length, limits);
        var metadata = new CaptureMetadata(FormatName);
        long offset = 0;
        int records = 0;
        while (offset < file.Length)
        {
            if (file.Length - offset < LimeLayout.HeaderSize)
            {
                throw Fail.At(FormatName, $"header[{records}]", offset, $"only {file.Length - offset} bytes left, a header needs {LimeLayout.HeaderSize}");
            }
            var header = new FieldReader(file.Span(offset, LimeLayout.HeaderSize), offset, FormatName, $"header[{records}]");
            uint magic = header.U32(LimeLayout.MagicOffset, "magic");
            uint version = header.U32(LimeLayout.VersionOffset, "version");
            if (magic == 0 && version == 0 && records > 0)
            {
                metadata.Warnings.Add($"zero header at 0x{offset:X} ends the records; 0x{file.Length - offset:X} trailing bytes ignored");
                break;
            }
            if (magic != LimeLayout.Magic)
            {
                throw header.Fail("magic", LimeLayout.MagicOffset, $"0x{magic:X8} is not the LiME magic 0x{LimeLayout.Magic:X8}");
            }
            if (version != LimeLayout.Version)
            {
                throw header.Fail("version", LimeLayout.VersionOffset, $"version {version} is not supported (only 1)");
            }
            ulong start = header.U64(LimeLayout.StartOffset, "s_addr");
            ulong end = header.U64(LimeLayout.EndOffset, "e_addr");
            if (end < start || end == ulong.MaxValue)
            {
                throw header.Fail("e_addr", LimeLayout.EndOffset, $"end 0x{end:X} is below start 0x{start:X}");
            }
            if (++records > limits.MaxRecords)
            {
                throw header.Fail("magic", 0, $"more than {limits.MaxRecords} records (ParserLimits.MaxRecords)");
            }
            ulong length = end - start + 1;
            long data = offset + LimeLayout.HeaderSize;
            builder.Add(new PhysicalRun(start, length, data), $"header[{records - 1}]", offset);
            if (length > (ulong)(file.Length - data))
            {
                offset = file.Length;
                break;
            }
            offset = data + (long)length;
        }
        if (records == 0)
        {
            throw Fail.At(FormatName, "header[0]", 0, "no records");
        }
        metadata.Add("records", records.ToString(CultureInfo.InvariantCulture));
        if (builder.TruncatedBytes > 0)
        {
            metadata.Warnings.Add($"file is truncated: 0x{builder.TruncatedBytes:X} bytes of the last range are missing");
        }
        return new ParsedCapture(file, builder.ToArray(), null, metadata);
    }
}
