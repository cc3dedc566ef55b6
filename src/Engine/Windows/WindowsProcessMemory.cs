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
}
