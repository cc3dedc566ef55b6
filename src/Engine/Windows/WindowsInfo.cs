using System.Globalization;
using System.Text;
using CloudMem.Engine.Plugins;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Windows;

/// <summary>windows.info: one fact about the kernel.</summary>
public sealed record WindowsInfoRow(string Variable, string Value);

/// <summary>
/// windows.info: what kernel discovery found (kernel base, DTB, self-reference index, PDB, symbol table, capture format)
/// plus the kernel's own globals when they read (KeNumberProcessors, NtBuildNumber, KUSER_SHARED_DATA versions, the PE
/// header's machine and time stamp).
/// </summary>
public static class WindowsInfo
{
    /// <summary>Where Windows x64 maps KUSER_SHARED_DATA in kernel space.</summary>
    public const ulong KUserSharedData = 0xFFFFF78000000000;

    /// <summary>windows.info.</summary>
    public static RowsReport<WindowsInfoRow> Info(WindowsKernel kernel)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        var rows = new List<WindowsInfoRow>();
        var notes = new List<string>();
        void Add(string name, string value) => rows.Add(new WindowsInfoRow(name, value));
        var reader = new WindowsMemoryReader(kernel.Kernel);

        Add("Kernel Base", $"0x{kernel.KernelBase:X}");
        Add("Kernel Physical", $"0x{kernel.Image.PhysicalAddress:X}");
        Add("DTB", $"0x{kernel.Dtb:X}");
        Add("DTB source", kernel.DtbSource);
        Add("Discovery", kernel.DiscoveryPath);
        Add("Self-Reference Index", $"0x{kernel.SelfRefIndex:X} ({kernel.SelfRefIndex})");
        Add("PDB", kernel.Image.PdbName);
        Add("PDB GUID/Age", kernel.Image.GuidAge);
        Add("Symbols", kernel.SymbolPath);
        Add("Is64Bit", "True");
        if (kernel.Physical is ICaptureMetadata metadata)
        {
            Add("Capture Format", metadata.Metadata.Format);
        }
        Add("Capture", kernel.Physical.Description);

        if (kernel.TryGetSymbol("KeNumberProcessors", out ulong processors))
        {
            Add("KeNumberProcessors", reader.TryUInt32(processors, out uint count) ? count.ToString(CultureInfo.InvariantCulture) : Unread(reader, notes, "KeNumberProcessors"));
        }
        if (kernel.TryGetSymbol("NtBuildNumber", out ulong buildAddress))
        {
            if (!reader.TryUInt32(buildAddress, out uint build))
            {
                Add("NtBuildNumber", Unread(reader, notes, "NtBuildNumber"));
            }
            else if (build == 0)
            {
                Add("NtBuildNumber", "0 (not set)");
            }
            else
            {
                string kind = (build >> 28) switch { 0xF => "free", 0xC => "checked", _ => $"flags 0x{build >> 16:X}" };
                Add("NtBuildNumber", $"{build & 0xFFFF} ({kind}, 0x{build:X8})");
            }
        }
        if (kernel.Types.TryGetOffset("_KUSER_SHARED_DATA", "NtMajorVersion", out int major)
            && kernel.Types.TryGetOffset("_KUSER_SHARED_DATA", "NtMinorVersion", out int minor))
        {
            if (reader.TryUInt32(KUserSharedData + (ulong)major, out uint majorValue) && reader.TryUInt32(KUserSharedData + (ulong)minor, out uint minorValue))
            {
                Add("NtMajorVersion", majorValue.ToString(CultureInfo.InvariantCulture));
                Add("NtMinorVersion", minorValue.ToString(CultureInfo.InvariantCulture));
                if (kernel.Types.TryGetOffset("_KUSER_SHARED_DATA", "SystemTime", out int time) && reader.TryUInt64(KUserSharedData + (ulong)time, out ulong now)
                    && WindowsProcesses.FileTime(now) is DateTimeOffset systemTime)
                {
                    Add("SystemTime", Output.UtcTimeConverter.Format(systemTime));
                }
                if (kernel.Types.TryGetOffset("_KUSER_SHARED_DATA", "NtSystemRoot", out int root))
                {
                    byte[] text = new byte[520];
                    if (reader.TryRead(KUserSharedData + (ulong)root, text))
                    {
                        string s = Encoding.Unicode.GetString(text);
                        int nul = s.IndexOf('\0', StringComparison.Ordinal);
                        Add("NtSystemRoot", nul >= 0 ? s[..nul] : s);
                    }
                }
            }
            else
            {
                notes.Add($"KUSER_SHARED_DATA at 0x{KUserSharedData:X} does not read: {reader.Failure}");
            }
        }
        // The kernel's PE header: machine and link time stamp.
        if (reader.TryUInt32(kernel.KernelBase + 0x3C, out uint lfanew) && lfanew < 0x1000
            && reader.TryUInt16(kernel.KernelBase + lfanew + 4, out ushort machine)
            && reader.TryUInt32(kernel.KernelBase + lfanew + 8, out uint stamp))
        {
            Add("PE Machine", machine == 0x8664 ? "34404 (AMD64)" : machine.ToString(CultureInfo.InvariantCulture));
            Add("PE TimeDateStamp", stamp == 0 ? "0 (not set)" : DateTimeOffset.FromUnixTimeSeconds(stamp).UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture));
        }
        return new RowsReport<WindowsInfoRow>("windows.info", rows, notes);
    }

    private static string Unread(WindowsMemoryReader reader, List<string> notes, string what)
    {
        notes.Add(reader.Describe(what));
        return "unreadable";
    }
}
