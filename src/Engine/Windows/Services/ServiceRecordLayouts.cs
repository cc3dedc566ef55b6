using CloudMem.Engine.Core;
using CloudMem.Engine.Windows.Network;

namespace CloudMem.Engine.Windows.Services;

/// <summary>
/// Offsets inside the service control manager's in-memory service record (services.exe's heap) of one range of
/// Windows builds. services.exe has no public type information for it, so the offsets are kept here, per range.
/// </summary>
/// <param name="Name">Short name of the layout (the range it was learned for).</param>
/// <param name="Size">Bytes read per record (the last field read ends there).</param>
/// <param name="PrevEntry">Pointer to the previous record (the list is walked backwards from the header's record).</param>
/// <param name="ServiceName">Pointer to the NUL-terminated UTF-16 service name.</param>
/// <param name="DisplayName">Pointer to the NUL-terminated UTF-16 display name.</param>
/// <param name="Order">The record's position in the database (u32, at most 0xFFFF).</param>
/// <param name="Start">Start type (u32, SERVICE_BOOT_START .. SERVICE_DISABLED).</param>
/// <param name="Type">Service type flags (u32, SERVICE_KERNEL_DRIVER ...).</param>
/// <param name="State">Current state (u32, SERVICE_STOPPED .. SERVICE_PAUSED).</param>
/// <param name="ServiceProcess">Pointer to the image record of a Win32 service (its binary path and pid).</param>
/// <param name="DriverName">Pointer to a driver service's object name (UTF-16).</param>
/// <param name="ProcessBinaryPath">Offset of the binary path pointer in the image record.</param>
/// <param name="ProcessId">Offset of the pid (u32) in the image record.</param>
public sealed record ServiceRecordLayout(string Name, int Size, int PrevEntry, int ServiceName, int DisplayName, int Order, int Start, int Type,
    int State, int ServiceProcess, int DriverName, int ProcessBinaryPath, int ProcessId);

/// <summary>A range of Windows builds (major.minor, first..last build) and the service record layout it uses.</summary>
public sealed record ServiceLayoutRange(uint Major, uint Minor, uint FirstBuild, uint LastBuild, string Windows, ServiceRecordLayout Layout)
{
    /// <summary>The range as text, e.g. "10.0.19041-22631 (Windows 10 2004 - 11 23H2, Server 2022)".</summary>
    public string Builds => FirstBuild == LastBuild ? $"{Major}.{Minor}.{FirstBuild} ({Windows})" : $"{Major}.{Minor}.{FirstBuild}-{LastBuild} ({Windows})";
}

/// <summary>
/// OUR table of service control manager record layouts (x64), chosen by the kernel's version. The offsets are facts
/// learned from Volatility 3's per-version services tables and checked against the records its svcscan reads; the
/// database header ("serH" tag at 0, pointer to the newest record at 0x10) is the same in every range. Not covered:
/// XP/2003 (whose records carry an "sErv" tag and are found one by one), x86, ARM64.
/// </summary>
public static class ServiceRecordLayouts
{
    /// <summary>The database header's tag, "serH" (little-endian u32).</summary>
    public const uint HeaderTag = 0x48726573;

    /// <summary>Offset of the newest record's pointer in the header.</summary>
    public const int HeaderRecord = 0x10;

    private static readonly ServiceRecordLayout Vista = new("vista", 0x50, PrevEntry: 0, ServiceName: 0x8, DisplayName: 0x10, Order: 0x18,
        Start: 0x4C, Type: 0x30, State: 0x34, ServiceProcess: 0x28, DriverName: 0x28, ProcessBinaryPath: 0x10, ProcessId: 0x18);

    private static readonly ServiceRecordLayout Win8 = new("win8", 0x60, PrevEntry: 0x8, ServiceName: 0x10, DisplayName: 0x18, Order: 0x20,
        Start: 0x5C, Type: 0x40, State: 0x44, ServiceProcess: 0x38, DriverName: 0x38, ProcessBinaryPath: 0x18, ProcessId: 0x20);

    private static readonly ServiceRecordLayout Win10Rs2 = new("15063", 0xF0, PrevEntry: 0x10, ServiceName: 0x38, DisplayName: 0x40, Order: 0x20,
        Start: 0x24, Type: 0x48, State: 0x4C, ServiceProcess: 0xE8, DriverName: 0xE8, ProcessBinaryPath: 0x18, ProcessId: 0x20);

    private static readonly ServiceRecordLayout Win10Rs3 = Win10Rs2 with { Name = "16299", ProcessId = 0x28 };

    private static readonly ServiceRecordLayout Win10Rs6 = Win10Rs3 with { Name = "18362", Size = 0xF8, ServiceProcess = 0xF0, DriverName = 0xF0 };

    private static readonly ServiceRecordLayout Win10Vb = Win10Rs3 with { Name = "19041", Size = 0x130, ServiceProcess = 0x128, DriverName = 0x128 };

    private static readonly ServiceRecordLayout Server23H2 = Win10Rs3 with { Name = "25398", Size = 0x158, Type = 0x50, State = 0x54, ServiceProcess = 0x150, DriverName = 0x128 };

    /// <summary>Every range covered, oldest first.</summary>
    public static IReadOnlyList<ServiceLayoutRange> All { get; } =
    [
        new(6, 0, 6000, 6002, "Vista / Server 2008", Vista),
        new(6, 1, 7600, 7601, "Windows 7 / Server 2008 R2", Vista),
        new(6, 2, 9200, 9200, "Windows 8 / Server 2012", Win8),
        new(6, 3, 9600, 9600, "Windows 8.1 / Server 2012 R2", Win8),
        new(10, 0, 10240, 14393, "Windows 10 1507 - 1607, Server 2016", Win8),
        new(10, 0, 15063, 15063, "Windows 10 1703", Win10Rs2),
        new(10, 0, 16299, 17763, "Windows 10 1709 - 1809, Server 2019", Win10Rs3),
        new(10, 0, 18362, 18363, "Windows 10 1903 - 1909", Win10Rs6),
        new(10, 0, 19041, 22631, "Windows 10 2004 - 22H2, Server 2022, Windows 11 21H2 - 23H2", Win10Vb),
        new(10, 0, 25398, 26100, "Server 2022 23H2, Windows 11 24H2, Server 2025", Server23H2),
    ];

    /// <summary>The layout of a Windows version, or null.</summary>
    public static ServiceLayoutRange? Find(uint major, uint minor, uint build)
        => All.FirstOrDefault(r => r.Major == major && r.Minor == minor && build >= r.FirstBuild && build <= r.LastBuild);

    /// <summary>The layout of the kernel's version.</summary>
    /// <exception cref="KernelNotFoundException">The version is outside every range (the message lists them).</exception>
    public static ServiceLayoutRange Require(WindowsVersion version)
    {
        ArgumentNullException.ThrowIfNull(version);
        return Find(version.Major, version.Minor, version.Build)
            ?? throw new KernelNotFoundException(
                $"no service record layout for Windows {version.Major}.{version.Minor}.{version.Build} ({version.Source}); " +
                $"the layout table covers {string.Join(", ", All.Select(l => l.Builds))}");
    }
}
