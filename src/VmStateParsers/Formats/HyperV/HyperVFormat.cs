using System.Buffers.Binary;
using System.Globalization;
using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.HyperV;

/// <summary>
/// Hyper-V saved state and configuration files (.vmrs, .vmcx, .vsv): the HyperVStorage key-value container. The key
/// tree goes into <see cref="CaptureMetadata.KeyTree"/>; guest RAM, when the file holds it, becomes runs.
/// Files without RAM (configuration, runtime metrics) open with no runs.
/// </summary>
internal sealed class HyperVFormat : CaptureFormat
{
    /// <summary>The format's short name (also what its writer is verified as).</summary>
    public const string Id = "hyperv";

    public override string Name => Id;

    /// <summary>
    /// A header copy at 0 or at 0x1000 (copy 0 may be the damaged one) with the signature; copy 1 alone must also have a
    /// plausible version and alignment, so a raw image whose second page happens to start with the signature stays raw.
    /// </summary>
    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength)
    {
        bool at0 = head.Length >= 4 && BinaryPrimitives.ReadUInt32LittleEndian(head) == HyperVLayout.HeaderSignature;
        return at0 || Plausible(head.Length >= HyperVLayout.HeaderCopy1 + HyperVLayout.HeaderSize ? head.Slice((int)HyperVLayout.HeaderCopy1, HyperVLayout.HeaderSize) : default)
            ? FormatProbeResult.Match
            : FormatProbeResult.NoMatch;
    }

    private static bool Plausible(ReadOnlySpan<byte> header)
    {
        if (header.Length < HyperVLayout.HeaderSize || BinaryPrimitives.ReadUInt32LittleEndian(header) != HyperVLayout.HeaderSignature)
        {
            return false;
        }
        uint version = BinaryPrimitives.ReadUInt32LittleEndian(header[HyperVLayout.HeaderVersionOffset..]);
        uint alignment = BinaryPrimitives.ReadUInt32LittleEndian(header[HyperVLayout.HeaderAlignmentOffset..]);
        return version is >= 0x0100 and <= HyperVLayout.CurrentVersion
            && alignment is >= HyperVLayout.MinAlignment and <= HyperVLayout.MaxAlignment && (alignment & (alignment - 1)) == 0;
    }

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits)
    {
        HyperVStorage storage = HyperVStorage.Parse(file, limits);
        var builder = new RunMapBuilder(HyperVStorage.FormatName, file.Length, limits);
        var metadata = new CaptureMetadata("Hyper-V storage container (HyperVStorage: .vmrs/.vmcx/.vsv)");
        string C(long n) => n.ToString(CultureInfo.InvariantCulture);
        metadata.Add("format version", $"0x{storage.Version:X} ({storage.Version >> 8}.{storage.Version & 0xFF})");
        metadata.Add("header copy", $"{storage.HeaderCopy} (sequence {storage.Sequence}; other copy: {storage.OtherCopy})");
        metadata.Add("data alignment", $"0x{storage.Alignment:X}");
        metadata.Add("replay logs", C(storage.ReplayLogs));
        metadata.Add("replay log entries", C(storage.ReplayLogEntries));
        metadata.Add("object tables", C(storage.ObjectTables));
        metadata.Add("key tables", C(storage.KeyTables));
        if (storage.SupersededKeyTables > 0)
        {
            metadata.Add("superseded key tables", C(storage.SupersededKeyTables));
        }
        metadata.Add("file objects", C(storage.FileObjects));
        metadata.Add("keys", C(storage.Keys.Count));
        long? vmVersion = storage.Integer(storage.Find(HyperVLayout.VmVersionKey)) ?? storage.Integer(storage.Find(HyperVLayout.ConfigurationVersionKey));
        if (vmVersion is { } v)
        {
            metadata.Add("vm version", $"0x{v:X} ({v >> 8}.{v & 0xFF})");
        }
        foreach (HyperVKey key in storage.Keys)
        {
            metadata.KeyTree.Add(new MetadataKey(key.Path, HyperVStorage.TypeName(key), storage.Describe(key)));
        }
        metadata.Warnings.AddRange(storage.Warnings);
        HyperVKey? partitionState = storage.Find(HyperVLayout.PartitionStateKey) ?? storage.Find(HyperVLayout.LegacyPartitionStateKey);
        if (partitionState is { Type: HyperVKeyType.Array })
        {
            HyperVPartitionState.Read(storage.Value(partitionState), metadata, limits);
        }
        HyperVRam? ram = HyperVRam.Map(storage, file, builder, metadata);
        if (ram is null)
        {
            metadata.Add("guest memory", "no guest memory in this file (no /savedstate/RamMemoryBlock keys)");
        }
        else
        {
            metadata.Add("guest memory", $"{ram.Descriptors} RamMemoryBlock descriptors; RamBlocks: {ram.RawBlocks} raw, {ram.CompressedBlocks} compressed (compressed decoding is unverified against real files)");
        }
        if (builder.TruncatedBytes > 0)
        {
            metadata.Warnings.Add($"file is truncated: 0x{builder.TruncatedBytes:X} bytes of RAM are missing");
        }
        return new ParsedCapture(file, builder.ToArray(), ram is { CompressedBlocks: > 0 } ? ram : null, metadata);
    }
}
