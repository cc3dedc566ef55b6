using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Windows.Network;

namespace CloudMem.Engine.Windows.Services;

/// <summary>Service states (SERVICE_STOPPED ...); start types and type flags are the registry's (<see cref="ServiceStartType"/>, <see cref="ServiceTypes"/>).</summary>
public enum ServiceState
{
    /// <summary>SERVICE_STOPPED.</summary>
    Stopped = 1,
    /// <summary>SERVICE_START_PENDING.</summary>
    StartPending = 2,
    /// <summary>SERVICE_STOP_PENDING.</summary>
    StopPending = 3,
    /// <summary>SERVICE_RUNNING.</summary>
    Running = 4,
    /// <summary>SERVICE_CONTINUE_PENDING.</summary>
    ContinuePending = 5,
    /// <summary>SERVICE_PAUSE_PENDING.</summary>
    PausePending = 6,
    /// <summary>SERVICE_PAUSED.</summary>
    Paused = 7,
}

/// <summary>A service of the service control manager's database (windows.svcscan).</summary>
/// <param name="Offset">Virtual address of the record in services.exe.</param>
/// <param name="Order">The record's position in the database.</param>
/// <param name="Pid">The service's process (running Win32 services only).</param>
/// <param name="Start">Start type.</param>
/// <param name="State">Current state.</param>
/// <param name="Type">Service type flags.</param>
/// <param name="Name">Service name (the registry key under Services).</param>
/// <param name="DisplayName">Display name.</param>
/// <param name="Binary">The image record's binary path (Win32 services) or the driver object name (drivers); null when the record has none (a stopped service).</param>
/// <param name="Suspicious">The binary lies in a user-writable directory, runs encoded PowerShell or a URL (the registry persistence view's judgement).</param>
/// <param name="Reason">Why it is suspicious.</param>
/// <param name="ScmPid">The services.exe process the record was found in.</param>
/// <param name="Doubt">Why a name, the image record or the pid did not read.</param>
public sealed record ServiceRow([property: Hex] ulong Offset, uint Order, long? Pid, ServiceStartType Start, ServiceState State, ServiceTypes Type,
    string? Name, string? DisplayName, string? Binary, bool Suspicious, string? Reason, long ScmPid, string? Doubt);

/// <summary>
/// windows.svcscan: the service control manager's records in services.exe. Every VAD of each services.exe is searched
/// for the database header (the "serH" tag at an 8-byte boundary, the newest record's pointer at +0x10); from a header
/// whose record is valid the records are walked backwards through PrevEntry until a record is invalid, null or seen
/// before (the same records reached from another header are not repeated). A record is valid when its order is at
/// most 0xFFFF and its state and start type are known values (as Volatility 3 checks). The layout comes from
/// <see cref="ServiceRecordLayouts"/> by the kernel's version.
/// </summary>
public static class WindowsSvcScan
{
    private const ulong UserTop = 0x0000800000000000;
    private const int MaxNameBytes = 1024;

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("windows.svcscan",
            "Services from the service control manager's records in services.exe: order, pid, start type, state, type, name, display name, binary",
            TargetOs.Windows),
            (c, a, ct) => SvcScan(c.Windows(ct), ct));

    /// <summary>windows.svcscan.</summary>
    /// <exception cref="KernelNotFoundException">The Windows version has no service record layout.</exception>
    public static RowsReport<ServiceRow> SvcScan(WindowsKernel kernel, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ServiceLayoutRange range = ServiceRecordLayouts.Require(WindowsVersion.Read(kernel));
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.List(kernel, ct);
        List<WindowsProcess> scms = processes.Where(p => p.ImageFileName.Equals("services.exe", StringComparison.OrdinalIgnoreCase)).ToList();
        var rows = new List<ServiceRow>();
        if (scms.Count == 0)
        {
            notes.Add("no services.exe on the process list: no service database to read");
        }
        WindowsVads walker = WindowsVads.For(kernel);
        foreach (WindowsProcess scm in scms)
        {
            (List<WindowsVad> vads, List<string> walkNotes) = walker.List(scm.Offset, scm.Pid, ct);
            notes.AddRange(walkNotes);
            var reader = new RecordReader(kernel.ProcessSpace(scm.Dtb), range.Layout, scm.Pid);
            int headers = 0;
            foreach (ulong header in Headers(reader.Space, vads, scm.Pid, notes, ct))
            {
                headers++;
                if (!reader.Space.TryReadUInt64(header + ServiceRecordLayouts.HeaderRecord, out ulong record) || !reader.IsValid(record))
                {
                    continue;
                }
                for (int walked = 0; record != 0 && reader.IsValid(record) && reader.Seen.Add(record); walked++)
                {
                    ct.ThrowIfCancellationRequested();
                    if (rows.Count >= AnalysisLimits.Default.MaxServiceRecords)
                    {
                        notes.Add($"more than {AnalysisLimits.Default.MaxServiceRecords} service records: the rest is not read");
                        return new RowsReport<ServiceRow>("windows.svcscan", rows, notes);
                    }
                    rows.Add(reader.Row(record));
                    if (!reader.Space.TryReadUInt64(record + (ulong)range.Layout.PrevEntry, out record))
                    {
                        break;
                    }
                }
            }
            if (headers == 0)
            {
                notes.Add($"services.exe pid {scm.Pid}: no service database header (\"serH\") in its {vads.Count} VADs (layout {range.Layout.Name} for {range.Builds})");
            }
        }
        return new RowsReport<ServiceRow>("windows.svcscan", rows, notes);
    }

    /// <summary>Addresses of 8-byte aligned "serH" tags in the VADs' readable pages (at most MaxSecretScanBytes per process).</summary>
    private static IEnumerable<ulong> Headers(AddressSpace space, List<WindowsVad> vads, long pid, List<string> notes, CancellationToken ct)
    {
        byte[] page = new byte[4096];
        ulong scanned = 0, maxBytes = AnalysisLimits.Default.MaxSecretScanBytes;
        foreach (WindowsVad vad in vads)
        {
            for (ulong va = vad.Start & ~0xFFFUL; va <= vad.End && va >= (vad.Start & ~0xFFFUL); va += (ulong)page.Length)
            {
                ct.ThrowIfCancellationRequested();
                if ((scanned += (ulong)page.Length) > maxBytes)
                {
                    notes.Add($"services.exe pid {pid}: more than {maxBytes} bytes of VADs: the rest is not searched");
                    yield break;
                }
                if (!space.TryTranslate(va, out _, out _) || space.Read(va, page) != page.Length)
                {
                    continue;
                }
                for (int at = 0; at < page.Length; at += 8)
                {
                    if (BinaryPrimitives.ReadUInt32LittleEndian(page.AsSpan(at)) == ServiceRecordLayouts.HeaderTag)
                    {
                        yield return va + (ulong)at;
                    }
                }
            }
        }
    }

    /// <summary>Reads records of one layout in one services.exe.</summary>
    private sealed class RecordReader(AddressSpace space, ServiceRecordLayout layout, long scmPid)
    {
        public AddressSpace Space => space;

        public HashSet<ulong> Seen { get; } = [];

        public bool IsValid(ulong record)
        {
            if (record == 0 || record >= UserTop || record % 8 != 0)
            {
                return false;
            }
            return space.TryReadUInt32(record + (ulong)layout.Order, out uint order) && order <= 0xFFFF
                && space.TryReadUInt32(record + (ulong)layout.State, out uint state) && Enum.IsDefined((ServiceState)state)
                && space.TryReadUInt32(record + (ulong)layout.Start, out uint start) && Enum.IsDefined((ServiceStartType)start);
        }

        public ServiceRow Row(ulong record)
        {
            var doubts = new List<string>();
            space.TryReadUInt32(record + (ulong)layout.Order, out uint order);
            space.TryReadUInt32(record + (ulong)layout.State, out uint state);
            space.TryReadUInt32(record + (ulong)layout.Start, out uint start);
            if (!space.TryReadUInt32(record + (ulong)layout.Type, out uint type))
            {
                doubts.Add($"type at 0x{record + (ulong)layout.Type:X} does not read");
            }
            string? name = String(record + (ulong)layout.ServiceName, "service name", doubts);
            string? display = String(record + (ulong)layout.DisplayName, "display name", doubts);
            bool win32 = (type & (uint)(ServiceTypes.Win32OwnProcess | ServiceTypes.Win32ShareProcess | ServiceTypes.InteractiveProcess)) != 0;
            string? binary = null;
            long? pid = null;
            if (win32)
            {
                if (!space.TryReadUInt64(record + (ulong)layout.ServiceProcess, out ulong image))
                {
                    doubts.Add($"image record pointer at 0x{record + (ulong)layout.ServiceProcess:X} does not read");
                }
                else if (image != 0)
                {
                    binary = String(image + (ulong)layout.ProcessBinaryPath, "binary path", doubts);
                    if ((ServiceState)state == ServiceState.Running)
                    {
                        pid = space.TryReadUInt32(image + (ulong)layout.ProcessId, out uint p) ? p : null;
                        if (pid is null)
                        {
                            doubts.Add($"pid at 0x{image + (ulong)layout.ProcessId:X} does not read");
                        }
                    }
                }
            }
            else
            {
                binary = String(record + (ulong)layout.DriverName, "driver name", doubts);
            }
            string? reason = WindowsPersistence.Judge(binary);
            return new ServiceRow(record, order, pid, (ServiceStartType)start, (ServiceState)state, (ServiceTypes)(int)type, name, display, binary,
                reason is not null, reason, scmPid,
                doubts.Count == 0 ? null : string.Join("; ", doubts));
        }

        /// <summary>The UTF-16 string a pointer at <paramref name="at"/> points to (null for a null pointer, or with a doubt when it does not read).</summary>
        private string? String(ulong at, string what, List<string> doubts)
        {
            if (!space.TryReadUInt64(at, out ulong pointer))
            {
                doubts.Add($"{what} pointer at 0x{at:X} does not read");
                return null;
            }
            if (pointer == 0)
            {
                return null;
            }
            string? text = space.ReadWideCString(pointer, MaxNameBytes);
            if (text is null)
            {
                doubts.Add($"{what} at 0x{pointer:X} does not read");
            }
            return text;
        }
    }
}
