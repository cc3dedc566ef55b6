using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Paging;

namespace CloudMem.Engine.Windows;

/// <summary>A process's user address space (its own page tables; the kernel half is shared).</summary>
public static class WindowsProcessMemory
{
    /// <summary>The address space rooted at the process DTB (_KPROCESS.DirectoryTableBase; flag and PCID bits are masked off).</summary>
    public static AddressSpace ProcessSpace(this WindowsKernel kernel, ulong dtb)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        return new AddressSpace(kernel.Physical, dtb & ~0xFFFUL, kernel.Kernel.Mode);
    }

    /// <summary>
    /// The process whose _EPROCESS is at kernel address <paramref name="eprocess"/>, whether or not it is on the active
    /// list (e.g. one found by windows.psscan), or null when its fields do not read.
    /// </summary>
    public static WindowsProcess? ProcessAt(this WindowsKernel kernel, ulong eprocess)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        WindowsUserLayout layout = WindowsUserLayout.For(kernel);
        var reader = new WindowsMemoryReader(kernel.Kernel);
        byte[] name = new byte[15];
        if (!reader.TryUInt64(eprocess + (ulong)layout.ProcessPid, out ulong pid)
            || !reader.TryUInt64(eprocess + (ulong)layout.ProcessPpid, out ulong ppid)
            || !reader.TryRead(eprocess + (ulong)layout.ProcessName, name)
            || !reader.TryUInt64(eprocess + (ulong)layout.ProcessCreateTime, out ulong created)
            || !reader.TryUInt64(eprocess + (ulong)layout.ProcessDtb, out ulong dtb))
        {
            return null;
        }
        int nul = Array.IndexOf(name, (byte)0);
        return new WindowsProcess(eprocess, (long)pid, (long)ppid, Encoding.ASCII.GetString(name, 0, nul >= 0 ? nul : name.Length),
            WindowsProcesses.FileTime(created), dtb);
    }
}

/// <summary>
/// Reads of Windows structures in one address space that remember why they failed: every <c>Try</c> method returns false
/// on the first byte that does not translate and leaves the reason in <see cref="Failure"/> in Volatility's words
/// ("Required memory at 0x... is not valid (NotPresent)").
/// </summary>
/// <remarks>Not thread-safe (one reader per walk). Never throws.</remarks>
public sealed class WindowsMemoryReader(IVirtualMemory memory)
{
    /// <summary>Longest _UNICODE_STRING read (its Length field is 16 bits).</summary>
    public const int MaxUnicodeBytes = 0xFFFF;

    /// <summary>The address space read.</summary>
    public IVirtualMemory Memory { get; } = memory;

    /// <summary>Why the last failed read failed (null before any failure).</summary>
    public string? Failure { get; private set; }

    /// <summary>Reads a u64 (a pointer).</summary>
    public bool TryUInt64(ulong va, out ulong value)
    {
        Span<byte> b = stackalloc byte[8];
        if (!TryRead(va, b))
        {
            value = 0;
            return false;
        }
        value = BinaryPrimitives.ReadUInt64LittleEndian(b);
        return true;
    }

    /// <summary>Reads a u32.</summary>
    public bool TryUInt32(ulong va, out uint value)
    {
        Span<byte> b = stackalloc byte[4];
        if (!TryRead(va, b))
        {
            value = 0;
            return false;
        }
        value = BinaryPrimitives.ReadUInt32LittleEndian(b);
        return true;
    }

    /// <summary>Reads a u16.</summary>
    public bool TryUInt16(ulong va, out ushort value)
    {
        Span<byte> b = stackalloc byte[2];
        if (!TryRead(va, b))
        {
            value = 0;
            return false;
        }
        value = BinaryPrimitives.ReadUInt16LittleEndian(b);
        return true;
    }

    /// <summary>Fills <paramref name="destination"/> or records where the read stopped.</summary>
    public bool TryRead(ulong va, Span<byte> destination)
    {
        int got = Memory.Read(va, destination);
        if (got == destination.Length)
        {
            return true;
        }
        ulong at = va + (ulong)got;
        Memory.TryTranslate(at, out _, out TranslationFault fault);
        Failure = $"Required memory at 0x{at:X} is not valid ({(fault == TranslationFault.None ? "not in the capture" : fault.ToString())})";
        return false;
    }

    /// <summary>
    /// Reads the _UNICODE_STRING at <paramref name="va"/> (Length and Buffer at the given offsets): the one reader of
    /// _UNICODE_STRING in the Windows code. An empty string (Length 0) reads as "". Odd lengths are rounded down; a
    /// non-empty string with a null Buffer fails.
    /// </summary>
    public bool TryUnicodeString(ulong va, UnicodeStringLayout layout, out string text)
    {
        text = "";
        if (!TryUInt16(va + (ulong)layout.Length, out ushort length) || !TryUInt64(va + (ulong)layout.Buffer, out ulong buffer))
        {
            return false;
        }
        length &= 0xFFFE;
        if (length == 0)
        {
            return true;
        }
        if (buffer == 0)
        {
            Failure = $"_UNICODE_STRING at 0x{va:X} has Length 0x{length:X} and a null Buffer";
            return false;
        }
        byte[] bytes = new byte[length];
        if (!TryRead(buffer, bytes))
        {
            return false;
        }
        text = Encoding.Unicode.GetString(bytes);
        return true;
    }

    /// <summary>The _UNICODE_STRING at <paramref name="va"/> of <paramref name="memory"/>, or null when it does not read (see <see cref="TryUnicodeString"/>).</summary>
    public static string? UnicodeString(IVirtualMemory memory, ulong va, UnicodeStringLayout layout)
        => new WindowsMemoryReader(memory).TryUnicodeString(va, layout, out string text) ? text : null;

    /// <summary>The short description of a read of <paramref name="what"/> that failed.</summary>
    public string Describe(string what) => $"{what}: {Failure ?? "unreadable"}";
}

/// <summary>Offsets of _UNICODE_STRING's Length and Buffer.</summary>
public readonly record struct UnicodeStringLayout(int Length, int Buffer)
{
    /// <summary>The offsets in <paramref name="types"/>; the x64 ABI's (0 and 8) when the ISF does not describe _UNICODE_STRING.</summary>
    public static UnicodeStringLayout Of(Symbols.TypeModel types)
    {
        ArgumentNullException.ThrowIfNull(types);
        return new(types.TryGetOffset("_UNICODE_STRING", "Length", out int length) ? length : 0,
            types.TryGetOffset("_UNICODE_STRING", "Buffer", out int buffer) ? buffer : 8);
    }
}
