using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Windows;

/// <summary>A _FILE_OBJECT found by the pool scan (windows.filescan).</summary>
/// <param name="Offset">Physical address of the _FILE_OBJECT.</param>
/// <param name="Name">The full name: \Device\DEVICE then the file name (the file name alone when the device has no name).</param>
/// <param name="Device">The device object's name (null: no device, or its header does not read).</param>
/// <param name="FileName">_FILE_OBJECT.FileName (null: the string does not read).</param>
/// <param name="Access">Access granted, as Volatility-style letters: R (read), W (write), D (delete), then sharing r, w, d; '-' when not.</param>
/// <param name="Doubt">Why the name is missing (the page of the string that did not read).</param>
public sealed record FileScanRow([property: Hex] ulong Offset, string? Name, string? Device, string? FileName, string Access, string? Doubt);

/// <summary>
/// windows.filescan: every 'File' pool allocation (the shared pool walker) holding a _FILE_OBJECT right after its
/// object header (optional headers tried in 16-byte steps); a candidate must have Type 5 (IO_TYPE_FILE) and Size equal
/// to the ISF's _FILE_OBJECT size. The name is read through the kernel address space: the device object's name (its
/// object header's name information) and FileName.
/// </summary>
public static class WindowsFileScan
{
    private static readonly uint[] s_tags = [0x656C6946, 0xE56C6946];    // "File", with the protected bit

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("windows.filescan",
            "File objects found by scanning physical memory for 'File' pool allocations: physical offset, device and file name, access",
            TargetOs.Windows),
            (c, a, ct) => FileScan(c.Windows(ct), ct, c.Progress));

    /// <summary>windows.filescan.</summary>
    public static RowsReport<FileScanRow> FileScan(WindowsKernel kernel, CancellationToken ct = default, IProgressSink? progress = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        Layout l = Layout.From(kernel.Types);
        WindowsObjectManager objects = WindowsObjectManager.Open(kernel, ct);
        AddressSpace space = kernel.Kernel;
        var rows = new List<FileScanRow>();
        var notes = new List<string>();
        foreach ((ulong candidate, byte[] body) in WindowsPoolScanner.ScanIoObjects(kernel, s_tags, l.Size, l.Type, l.SizeField, 5, ct, progress))
        {
            if (rows.Count >= AnalysisLimits.Default.MaxScanResults)
            {
                notes.Add($"more than {AnalysisLimits.Default.MaxScanResults} file objects; scan stopped");
                return new RowsReport<FileScanRow>("windows.filescan", rows, notes);
            }
            rows.Add(Row(space, objects, l, candidate, body));
        }
        return new RowsReport<FileScanRow>("windows.filescan", rows, notes);
    }

    private static FileScanRow Row(AddressSpace space, WindowsObjectManager objects, Layout l, ulong offset, byte[] body)
    {
        string? doubt = null;
        int length = BinaryPrimitives.ReadUInt16LittleEndian(body.AsSpan(l.FileName + l.Text.Length));
        ulong buffer = BinaryPrimitives.ReadUInt64LittleEndian(body.AsSpan(l.FileName + l.Text.Buffer));
        string? file = length == 0 ? "" : null;
        if (length > 0)
        {
            byte[] text = new byte[length & ~1];
            if (space.Read(buffer, text) == text.Length)
            {
                file = Encoding.Unicode.GetString(text);
            }
            else
            {
                space.TryTranslate(buffer, out _, out TranslationFault fault);
                doubt = $"FileName buffer 0x{buffer:X} does not read ({fault})";
            }
        }
        ulong device = BinaryPrimitives.ReadUInt64LittleEndian(body.AsSpan(l.DeviceObject));
        string? deviceName = device != 0 && objects.TryReadHeaderOfBody(device, out ObjectHeader header) ? objects.NameInfoName(header) : null;
        string? name = file is null ? null : deviceName is null ? file : $@"\Device\{deviceName}{file}";
        char Flag(int at, char c) => body[at] != 0 ? c : '-';
        string access = string.Concat(Flag(l.ReadAccess, 'R'), Flag(l.WriteAccess, 'W'), Flag(l.DeleteAccess, 'D'),
            Flag(l.SharedRead, 'r'), Flag(l.SharedWrite, 'w'), Flag(l.SharedDelete, 'd'));
        return new FileScanRow(offset, name, deviceName, file, access, doubt);
    }

    private sealed record Layout(int BodyOffset, int Size, int Type, int SizeField, int DeviceObject, int FileName, UnicodeStringLayout Text,
        int ReadAccess, int WriteAccess, int DeleteAccess, int SharedRead, int SharedWrite, int SharedDelete)
    {
        public static Layout From(TypeModel t)
        {
            int Off(string f) => t.RequiredOffset("_FILE_OBJECT", f);
            return new Layout(t.RequiredOffset("_OBJECT_HEADER", "Body"), t.RequiredSize("_FILE_OBJECT"), Off("Type"), Off("Size"), Off("DeviceObject"),
                Off("FileName"), UnicodeStringLayout.Of(t), Off("ReadAccess"), Off("WriteAccess"), Off("DeleteAccess"),
                Off("SharedRead"), Off("SharedWrite"), Off("SharedDelete"));
        }
    }
}
