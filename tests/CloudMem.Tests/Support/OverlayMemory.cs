using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Support;

/// <summary>A real capture with some bytes replaced in reads: mutated captures without copying a 256 MiB file.</summary>
public sealed class OverlayMemory(IPhysicalMemory inner) : IPhysicalMemory
{
    private readonly SortedDictionary<ulong, byte[]> _patches = [];

    public void Patch(ulong physicalAddress, ReadOnlySpan<byte> bytes) => _patches[physicalAddress] = bytes.ToArray();

    public void PatchUInt64(ulong physicalAddress, ulong value)
    {
        byte[] bytes = new byte[8];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        Patch(physicalAddress, bytes);
    }

    public IReadOnlyList<PhysicalRun> Runs => inner.Runs;
    public ulong MaxAddress => inner.MaxAddress;
    public string Description => inner.Description + " (patched)";

    public int Read(ulong physicalAddress, Span<byte> destination)
    {
        int got = inner.Read(physicalAddress, destination);
        ulong end = physicalAddress + (ulong)got;
        foreach ((ulong at, byte[] bytes) in _patches)
        {
            ulong patchEnd = at + (ulong)bytes.Length;
            if (patchEnd <= physicalAddress || at >= end)
            {
                continue;
            }
            ulong from = Math.Max(at, physicalAddress);
            ulong to = Math.Min(patchEnd, end);
            bytes.AsSpan((int)(from - at), (int)(to - from)).CopyTo(destination[(int)(from - physicalAddress)..]);
        }
        return got;
    }

    public void Dispose()
    {
    }
}
