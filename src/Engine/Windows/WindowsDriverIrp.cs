using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows;

/// <summary>One IRP dispatch pointer of a driver object (windows.driverirp).</summary>
/// <param name="Offset">Physical address of the _DRIVER_OBJECT.</param>
/// <param name="Driver">_DRIVER_OBJECT.DriverName (e.g. \Driver\Tcpip); null when it does not read.</param>
/// <param name="DriverStart">The driver's image base (DriverStart).</param>
/// <param name="DriverSize">The driver's image size (DriverSize).</param>
/// <param name="Irp">The major function index (0..27).</param>
/// <param name="IrpName">Its name (IRP_MJ_CREATE ...).</param>
/// <param name="Address">The dispatch routine.</param>
/// <param name="Module">The module holding it (listed, or found only by the 'MmLd' pool scan); null when none.</param>
/// <param name="ModuleOnList">Whether that module is on PsLoadedModuleList (null: no module).</param>
/// <param name="Symbol">The kernel symbol at the routine when it is in the kernel image.</param>
/// <param name="OutsideDriver">The routine is outside [DriverStart, DriverStart + DriverSize).</param>
/// <param name="Suspicious">The routine is in no module, in a module hidden from PsLoadedModuleList, or outside its driver in another module than the kernel (the kernel's IopInvalidDeviceRequest fills unused slots).</param>
public sealed record DriverIrpRow([property: Hex] ulong Offset, string? Driver, [property: Hex] ulong DriverStart, [property: Hex] ulong DriverSize, int Irp,
    string IrpName, [property: Hex] ulong Address, string? Module, bool? ModuleOnList, string? Symbol, bool OutsideDriver, bool Suspicious);

/// <summary>
/// windows.driverirp: driver objects found by scanning physical memory for 'Driv' pool allocations (and the protected
/// form Windows 7 uses), the _DRIVER_OBJECT after the object header (optional headers tried in 16-byte steps) with Type
/// 4 (IO_TYPE_DRIVER) and Size equal to the ISF's _DRIVER_OBJECT size; each of its 28 MajorFunction pointers resolved
/// like an SSDT target. A driver whose dispatch routine lies in another driver's image, a hidden driver or no module at
/// all has been hooked (or forwards to a port/class driver: the module says which).
/// </summary>
public static class WindowsDriverIrp
{
    /// <summary>The IRP major function names, by index.</summary>
    public static IReadOnlyList<string> MajorFunctions { get; } =
    [
        "IRP_MJ_CREATE", "IRP_MJ_CREATE_NAMED_PIPE", "IRP_MJ_CLOSE", "IRP_MJ_READ", "IRP_MJ_WRITE", "IRP_MJ_QUERY_INFORMATION",
        "IRP_MJ_SET_INFORMATION", "IRP_MJ_QUERY_EA", "IRP_MJ_SET_EA", "IRP_MJ_FLUSH_BUFFERS", "IRP_MJ_QUERY_VOLUME_INFORMATION",
        "IRP_MJ_SET_VOLUME_INFORMATION", "IRP_MJ_DIRECTORY_CONTROL", "IRP_MJ_FILE_SYSTEM_CONTROL", "IRP_MJ_DEVICE_CONTROL",
        "IRP_MJ_INTERNAL_DEVICE_CONTROL", "IRP_MJ_SHUTDOWN", "IRP_MJ_LOCK_CONTROL", "IRP_MJ_CLEANUP", "IRP_MJ_CREATE_MAILSLOT",
        "IRP_MJ_QUERY_SECURITY", "IRP_MJ_SET_SECURITY", "IRP_MJ_POWER", "IRP_MJ_SYSTEM_CONTROL", "IRP_MJ_DEVICE_CHANGE",
        "IRP_MJ_QUERY_QUOTA", "IRP_MJ_SET_QUOTA", "IRP_MJ_PNP",
    ];

    private const ushort IoTypeDriver = 4;
    private static readonly uint[] s_tags = [0x76697244, 0xF6697244];    // "Driv", and "Dri\xF6" (protected bit, Windows 7)

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("windows.driverirp",
            "IRP dispatch pointers (28 per driver object found by the 'Driv' pool scan) with the module each points into; pointers outside their driver flagged",
            TargetOs.Windows),
            (c, a, ct) => DriverIrp(c.Windows(ct), ct, c.Progress));

    /// <summary>windows.driverirp.</summary>
    public static RowsReport<DriverIrpRow> DriverIrp(WindowsKernel kernel, CancellationToken ct = default, IProgressSink? progress = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        TypeModel t = kernel.Types;
        int size = t.RequiredSize("_DRIVER_OBJECT");
        int type = t.RequiredOffset("_DRIVER_OBJECT", "Type"), sizeField = t.RequiredOffset("_DRIVER_OBJECT", "Size");
        int start = t.RequiredOffset("_DRIVER_OBJECT", "DriverStart"), length = t.RequiredOffset("_DRIVER_OBJECT", "DriverSize");
        int name = t.RequiredOffset("_DRIVER_OBJECT", "DriverName"), major = t.RequiredOffset("_DRIVER_OBJECT", "MajorFunction");
        if (major + MajorFunctions.Count * 8 > size)
        {
            throw new KernelNotFoundException($"{t.Source}: _DRIVER_OBJECT.MajorFunction at 0x{major:X} does not hold {MajorFunctions.Count} pointers in 0x{size:X} bytes");
        }
        UnicodeStringLayout text = UnicodeStringLayout.Of(t);
        (List<WindowsModule> modules, List<string> notes) = WindowsModules.List(kernel, ct);
        var owners = new WindowsSsdt.KernelAddressOwners(kernel, modules, ct, progress);
        AddressSpace space = kernel.Kernel;
        var rows = new List<DriverIrpRow>();
        foreach ((ulong candidate, byte[] body) in WindowsPoolScanner.ScanIoObjects(kernel, s_tags, size, type, sizeField, IoTypeDriver, ct, progress))
        {
            if (rows.Count >= AnalysisLimits.Default.MaxScanResults)
            {
                notes.Add($"more than {AnalysisLimits.Default.MaxScanResults} dispatch pointers; scan stopped");
                return new RowsReport<DriverIrpRow>("windows.driverirp", rows, notes);
            }
            ulong driverStart = BinaryPrimitives.ReadUInt64LittleEndian(body.AsSpan(start));
            ulong driverSize = BinaryPrimitives.ReadUInt32LittleEndian(body.AsSpan(length));
            string? driverName = NameOf(space, body, name, text);
            if (driverName is null)
            {
                notes.Add($"_DRIVER_OBJECT at physical 0x{candidate:X}: DriverName does not read");
            }
            for (int irp = 0; irp < MajorFunctions.Count; irp++)
            {
                ulong address = BinaryPrimitives.ReadUInt64LittleEndian(body.AsSpan(major + irp * 8));
                (string? module, bool? onList, string? symbol, bool inKernel) = owners.Resolve(address);
                bool outside = address < driverStart || address - driverStart >= driverSize;
                bool suspicious = onList != true || (outside && !inKernel);
                rows.Add(new DriverIrpRow(candidate, driverName, driverStart, driverSize, irp, MajorFunctions[irp], address, module, onList, symbol, outside, suspicious));
            }
        }
        return new RowsReport<DriverIrpRow>("windows.driverirp", rows, notes);
    }

    /// <summary>The DriverName _UNICODE_STRING of a driver object read into <paramref name="body"/> (its buffer through the kernel space).</summary>
    private static string? NameOf(AddressSpace space, byte[] body, int at, UnicodeStringLayout text)
    {
        int length = BinaryPrimitives.ReadUInt16LittleEndian(body.AsSpan(at + text.Length)) & 0xFFFE;
        ulong buffer = BinaryPrimitives.ReadUInt64LittleEndian(body.AsSpan(at + text.Buffer));
        if (length == 0)
        {
            return "";
        }
        byte[] bytes = new byte[length];
        return buffer != 0 && space.Read(buffer, bytes) == bytes.Length ? System.Text.Encoding.Unicode.GetString(bytes) : null;
    }
}
