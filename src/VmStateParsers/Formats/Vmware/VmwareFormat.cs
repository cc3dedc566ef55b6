using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.Vmware;

/// <summary>A VMware checkpoint state file (.vmss suspend, .vmsn snapshot), recognised by its magic.</summary>
internal sealed class VmwareFormat : CaptureFormat
{
    /// <summary>The format's short name (also what its writer is verified as).</summary>
    public const string Id = "vmware";

    public override string Name => Id;

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength)
        => Checkpoint.HasMagic(head) ? FormatProbeResult.Match : FormatProbeResult.NoMatch;

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits) => VmwareParser.ParseState(file, limits);
}

/// <summary>
/// A VMware .vmem (headerless guest RAM) with a sibling state file (same base name, .vmss first, then .vmsn) that
/// starts with a VMware magic; the run table comes from that file's memory regions. Without such a sibling the
/// file is left to the raw fallback.
/// </summary>
internal sealed class VmemFormat : CaptureFormat
{
    private static readonly string[] s_stateExtensions = [".vmss", ".vmsn"];

    public override string Name => "vmem";

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength) => FormatProbeResult.NoMatch;

    public override FormatProbeResult Probe(ReadOnlySpan<byte> head, long fileLength, string path)
        => FindState(path) is null ? FormatProbeResult.NoMatch : FormatProbeResult.NeedsCompanion;

    public override ParsedCapture Parse(IByteSource file, ParserLimits limits)
    {
        string statePath = FindState(file.Path)
            ?? throw Fail.At(Checkpoint.FormatName, "state file", -1,
                $"no VMware state file beside it ({string.Join(" or ", s_stateExtensions.Select(e => Companions.Sibling(file.Path, e)))})");
        return VmwareParser.ParseVmem(file, statePath, limits);
    }

    /// <summary>
    /// The sibling state file with a VMware magic, or null. The pairing must hold both ways: the state file's own
    /// companion name (X.vmem) must be this file, so a padded raw image that merely shares a base name with a
    /// state file (memory.raw beside memory.vmss/memory.vmem) is not read through that file's region map.
    /// </summary>
    private static string? FindState(string path)
    {
        Span<byte> head = stackalloc byte[4];
        foreach (string extension in s_stateExtensions)
        {
            string candidate = Companions.Sibling(path, extension);
            if (string.Equals(Companions.Sibling(candidate, VmwareLayout.CompanionExtension), path, StringComparison.OrdinalIgnoreCase)
                && !string.Equals(candidate, path, StringComparison.OrdinalIgnoreCase)
                && Companions.ReadHead(candidate, head) == head.Length && Checkpoint.HasMagic(head))
            {
                return candidate;
            }
        }
        return null;
    }
}
