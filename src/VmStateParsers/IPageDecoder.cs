namespace CloudMem.VmStateParsers;

/// <summary>A unit of decoding: the smallest piece a compressed format can decode on its own (a page, a chunk).</summary>
/// <param name="Key">Identifies the unit across the capture (used as the cache key).</param>
/// <param name="PhysicalAddress">First physical byte the unit holds.</param>
/// <param name="Length">Bytes the unit decodes to.</param>
public readonly record struct DecodeUnit(long Key, ulong PhysicalAddress, int Length);

/// <summary>
/// Hook for formats whose pages are compressed or encoded (<see cref="RunStorage.Decoded"/> runs).
/// The shared <see cref="RunMappedMemory"/> does the caching and the splitting of reads.
/// </summary>
/// <remarks>Implementations are safe for concurrent callers.</remarks>
public interface IPageDecoder
{
    /// <summary>Largest <see cref="DecodeUnit.Length"/> this decoder returns.</summary>
    int MaxUnitSize { get; }

    /// <summary>Finds the unit holding <paramref name="physicalAddress"/>, which lies in <paramref name="run"/>.</summary>
    bool TryLocate(in PhysicalRun run, ulong physicalAddress, out DecodeUnit unit);

    /// <summary>Decodes a unit into <paramref name="destination"/> (exactly <see cref="DecodeUnit.Length"/> bytes).</summary>
    /// <returns>False when the stored data is corrupt; <paramref name="problem"/> then says why.</returns>
    bool TryDecode(in DecodeUnit unit, Span<byte> destination, out string? problem);
}
