using System.Buffers.Binary;
using System.Globalization;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Avml;

/// <summary>
/// AVML v2 captures. Opening walks each record's Snappy chunk headers once and keeps a compact chunk index
/// (physical start, file offset, stored length, kind); reads decode one chunk (at most 64 KiB) at a time.
/// </summary>
internal sealed class AvmlFormat : CaptureFormat
{
    private const string FormatName = "AVML";

    public override string Name => "avml";

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength)
        => head.Length >= AvmlLayout.HeaderSize && BinaryPrimitives.ReadUInt32LittleEndian(head) == AvmlLayout.Magic
           ? FormatProbeResult.Match
           : FormatProbeResult.NoMatch;

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits)
    {
        var builder = new RunMapBuilder(FormatName, file.Length, limits);
        var index = new ChunkIndex();
        var metadata = new CaptureMetadata("AVML (version 2, Snappy framed)");
        long offset = 0;
        int records = 0;
        ulong previousEnd = 0;
        ulong gaps = 0;
        while (offset < file.Length)
        {
            string structure = $"record[{records}]";
            if (file.Length - offset < AvmlLayout.HeaderSize)
            {
                if (records == 0)
                {
                    throw Fail.At(FormatName, structure, offset, $"only {file.Length - offset} bytes left, a header needs {AvmlLayout.HeaderSize}");
                }
                metadata.Warnings.Add($"file is truncated: it ends inside the header of {structure}; any later records read as holes");
                break;
            }
            var header = new FieldReader(file.Span(offset, AvmlLayout.HeaderSize), offset, FormatName, structure);
            uint magic = header.U32(AvmlLayout.MagicOffset, "magic");
            if (magic != AvmlLayout.Magic)
            {
                throw header.Fail("magic", AvmlLayout.MagicOffset, $"0x{magic:X8} is not the AVML magic 0x{AvmlLayout.Magic:X8}");
            }
            uint version = header.U32(AvmlLayout.VersionOffset, "version");
            if (version != AvmlLayout.Version)
            {
                throw header.Fail("version", AvmlLayout.VersionOffset, $"version {version} is not supported (only 2; version 1 files are LiME)");
            }
            ulong start = header.U64(AvmlLayout.StartOffset, "start");
            ulong end = header.U64(AvmlLayout.EndOffset, "end");
            if (header.U64(AvmlLayout.PaddingOffset, "padding") != 0)
            {
                throw header.Fail("padding", AvmlLayout.PaddingOffset, "padding is not zero");
            }
            if (end < start || end == ulong.MaxValue || end - start >= limits.MaxPhysicalAddress)
            {
                throw header.Fail("end", AvmlLayout.EndOffset, $"range 0x{start:X}..0x{end:X} is empty, reversed or too large");
            }
            if (++records > limits.MaxRecords)
            {
                throw header.Fail("magic", 0, $"more than {limits.MaxRecords} records (ParserLimits.MaxRecords)");
            }
            ulong length = end - start + 1;
            if (records > 1 && start > previousEnd)
            {
                gaps += start - previousEnd;
            }
            long streamStart = offset + AvmlLayout.HeaderSize;
            int firstChunk = index.Count;
            (long streamEnd, ulong decoded) = WalkChunks(file, streamStart, start, length, index, limits, structure);
            if (decoded < length && index.Count == 0)
            {
                throw Fail.At(FormatName, $"{structure} snappy chunk", streamEnd, $"the file ends before the first data chunk: nothing of the capture is stored");
            }
            if (decoded < length)
            {
                // A truncated copy: keep the chunks that are whole, say how much of the capture is missing, stop.
                builder.Add(new PhysicalRun(start, decoded, firstChunk, RunStorage.Decoded), structure, offset);
                metadata.Warnings.Add($"file is truncated: {structure} ends after 0x{decoded:X} of its 0x{length:X} bytes; the rest of it and any later records read as holes");
                break;
            }
            long framedLength = streamEnd - streamStart;
            if (file.Length - streamEnd < AvmlLayout.TrailerSize)
            {
                throw Fail.At(FormatName, $"{structure}.trailer", streamEnd, "file ends before the 8-byte length trailer");
            }
            ulong trailer = BinaryPrimitives.ReadUInt64LittleEndian(file.Span(streamEnd, AvmlLayout.TrailerSize));
            if (trailer != (ulong)framedLength)
            {
                throw Fail.At(FormatName, $"{structure}.trailer", streamEnd, $"says the framed stream is 0x{trailer:X} bytes but its chunks add up to 0x{framedLength:X}");
            }
            builder.Add(new PhysicalRun(start, length, firstChunk, RunStorage.Decoded), structure, offset);
            previousEnd = end + 1;
            offset = streamEnd + AvmlLayout.TrailerSize;
        }
        if (records == 0)
        {
            throw Fail.At(FormatName, "record[0]", 0, "no records");
        }
        metadata.Add("records", records.ToString(CultureInfo.InvariantCulture));
        metadata.Add("snappyChunks", index.Count.ToString(CultureInfo.InvariantCulture));
        if (gaps > 0)
        {
            metadata.Warnings.Add($"0x{gaps:X} bytes between records are not stored: AVML skips all-zero 16 MiB blocks, so these holes were probably zero (or not System RAM)");
        }
        return new ParsedCapture(file, builder.ToArray(), new AvmlChunkDecoder(file, index.Freeze()), metadata);
    }

    /// <summary>
    /// Walks the framed stream of one record, indexing data chunks; returns the stream's end offset and how many bytes
    /// of the range its chunks hold (less than the range when the file ends inside the stream: a truncated copy).
    /// </summary>
    private static (long End, ulong Decoded) WalkChunks(IByteSource file, long position, ulong physical, ulong length, ChunkIndex index, ParserLimits limits, string structure)
    {
        ulong decoded = 0;
        bool sawIdentifier = false;
        while (decoded < length)
        {
            if (file.Length - position < AvmlLayout.ChunkHeader)
            {
                return (position, decoded);
            }
            ReadOnlySpan<byte> ch = file.Span(position, AvmlLayout.ChunkHeader);
            byte type = ch[0];
            int chunkLength = ch[1] | ch[2] << 8 | ch[3] << 16;
            long data = position + AvmlLayout.ChunkHeader;
            if (chunkLength > file.Length - data)
            {
                return (position, decoded); // the file ends inside this chunk
            }
            switch (type)
            {
                case AvmlLayout.ChunkStreamIdentifier:
                    if (chunkLength != 6 || !file.Span(data, 6).SequenceEqual("sNaPpY"u8))
                    {
                        throw Fail.At(FormatName, $"{structure} snappy stream identifier", position, "is not \"sNaPpY\"");
                    }
                    sawIdentifier = true;
                    break;
                case AvmlLayout.ChunkCompressed:
                case AvmlLayout.ChunkUncompressed:
                {
                    if (!sawIdentifier)
                    {
                        throw Fail.At(FormatName, $"{structure} snappy chunk", position, "data chunk before the stream identifier");
                    }
                    if (chunkLength < AvmlLayout.ChunkCrc + 1)
                    {
                        throw Fail.At(FormatName, $"{structure} snappy chunk", position, $"data chunk of {chunkLength} bytes is too short");
                    }
                    ReadOnlySpan<byte> payload = file.Span(data + AvmlLayout.ChunkCrc, chunkLength - AvmlLayout.ChunkCrc);
                    int size;
                    if (type == AvmlLayout.ChunkUncompressed)
                    {
                        size = payload.Length;
                    }
                    else if (!Codecs.SnappyBlock.TryReadLength(payload, out size))
                    {
                        throw Fail.At(FormatName, $"{structure} snappy chunk", position, "compressed chunk has no valid length preamble");
                    }
                    if (size <= 0 || size > AvmlLayout.MaxChunkData || (ulong)size > length - decoded)
                    {
                        throw Fail.At(FormatName, $"{structure} snappy chunk", position, $"chunk decodes to {size} bytes (at most 65536, and 0x{length - decoded:X} left in the range)");
                    }
                    if (index.Count >= limits.MaxSnappyChunks)
                    {
                        throw Fail.At(FormatName, $"{structure} snappy chunk", position, $"more than {limits.MaxSnappyChunks} chunks (ParserLimits.MaxSnappyChunks)");
                    }
                    index.Add(physical + decoded, data + AvmlLayout.ChunkCrc, payload.Length, size, type == AvmlLayout.ChunkCompressed);
                    decoded += (ulong)size;
                    break;
                }
                default:
                    if (type < 0x80)
                    {
                        throw Fail.At(FormatName, $"{structure} snappy chunk", position, $"reserved unskippable chunk type 0x{type:X2}");
                    }
                    break; // padding and reserved skippable chunks
            }
            position = data + chunkLength;
        }
        return (position, decoded);
    }
}
