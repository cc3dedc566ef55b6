using System.Buffers.Binary;
using System.Runtime.InteropServices;

namespace CloudMem.VmStateParsers;

/// <summary>Typed reads over <see cref="IPhysicalMemory"/>; each reports success instead of returning a silent default.</summary>
public static class PhysicalMemoryExtensions
{
    /// <summary>Reads exactly <c>destination.Length</c> bytes, or returns false.</summary>
    public static bool TryReadExact(this IPhysicalMemory memory, ulong physicalAddress, Span<byte> destination)
        => memory.Read(physicalAddress, destination) == destination.Length;

    /// <summary>Reads a little-endian 64-bit value.</summary>
    public static bool TryReadUInt64(this IPhysicalMemory memory, ulong physicalAddress, out ulong value)
    {
        Span<byte> buffer = stackalloc byte[8];
        if (memory.Read(physicalAddress, buffer) != 8)
        {
            value = 0;
            return false;
        }
        value = BinaryPrimitives.ReadUInt64LittleEndian(buffer);
        return true;
    }

    /// <summary>Reads a little-endian 32-bit value.</summary>
    public static bool TryReadUInt32(this IPhysicalMemory memory, ulong physicalAddress, out uint value)
    {
        Span<byte> buffer = stackalloc byte[4];
        if (memory.Read(physicalAddress, buffer) != 4)
        {
            value = 0;
            return false;
        }
        value = BinaryPrimitives.ReadUInt32LittleEndian(buffer);
        return true;
    }

    /// <summary>Reads an unmanaged value in the machine's byte order.</summary>
    public static bool TryRead<T>(this IPhysicalMemory memory, ulong physicalAddress, out T value) where T : unmanaged
    {
        value = default;
        Span<byte> bytes = MemoryMarshal.AsBytes(MemoryMarshal.CreateSpan(ref value, 1));
        return memory.Read(physicalAddress, bytes) == bytes.Length;
    }

    /// <summary>Total bytes held by the runs.</summary>
    public static ulong TotalBytes(this IPhysicalMemory memory)
    {
        ulong total = 0;
        foreach (PhysicalRun run in memory.Runs)
        {
            total += run.Length;
        }
        return total;
    }
}
