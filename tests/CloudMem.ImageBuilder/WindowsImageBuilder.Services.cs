using CloudMem.Engine.Windows;
using CloudMem.Engine.Windows.Services;

namespace CloudMem.ImageBuilder;

/// <summary>
/// The service control manager's database in services.exe: a private read-write region holding the database header
/// ("serH", the newest record's pointer at +0x10), one record per service in the layout of the image's Windows
/// version (<see cref="ServiceRecordLayouts"/>), each record's PrevEntry pointing at the one before it (the first's is
/// null), the UTF-16 names, and per Win32 service that is not stopped an image record with its binary path and pid.
/// </summary>
public sealed partial class WindowsImageBuilder
{
    /// <summary>Where services.exe's service database region is mapped.</summary>
    public const ulong ServiceDatabase = 0x000001F2C9000000;

    private const int ServiceDatabaseSize = 0x10000;

    private List<LaidOutService> LayOutServices(ProcessLayout p, IReadOnlyList<ScenarioService> services)
    {
        (uint major, uint minor, uint build) = EffectiveVersion;
        ServiceRecordLayout layout = (ServiceRecordLayouts.Find(major, minor, build)
            ?? throw new InvalidOperationException($"no service record layout for Windows {major}.{minor}.{build}")).Layout;
        MapUserRegion(p, ServiceDatabase, ServiceDatabaseSize, RegionKind.Private, "PAGE_READWRITE");
        ulong next = ServiceDatabase + 0x40;
        ulong Alloc(int size)
        {
            ulong at = next;
            next = (next + (ulong)size + 15) & ~15UL;
            return next > ServiceDatabase + ServiceDatabaseSize ? throw new InvalidOperationException("service database region full") : at;
        }
        ulong String(string text)
        {
            byte[] bytes = PhysicalImage.Utf16z(text);
            ulong at = Alloc(bytes.Length);
            _image.WriteVa(p.Dtb, at, bytes);
            return at;
        }
        ulong header = Alloc(0x20);
        var laid = new List<LaidOutService>();
        ulong previous = 0;
        foreach (ScenarioService service in services)
        {
            ulong record = Alloc(layout.Size);
            uint order = (uint)laid.Count + 1;
            string display = service.DisplayName ?? service.Name;
            _image.Write64(p.Dtb, record + (ulong)layout.PrevEntry, previous);
            _image.Write64(p.Dtb, record + (ulong)layout.ServiceName, String(service.Name));
            _image.Write64(p.Dtb, record + (ulong)layout.DisplayName, String(display));
            _image.Write32(p.Dtb, record + (ulong)layout.Order, order);
            _image.Write32(p.Dtb, record + (ulong)layout.Start, (uint)service.Start);
            _image.Write32(p.Dtb, record + (ulong)layout.Type, (uint)service.Type);
            _image.Write32(p.Dtb, record + (ulong)layout.State, (uint)service.State);
            bool win32 = (service.Type & (ServiceTypes.Win32OwnProcess | ServiceTypes.Win32ShareProcess)) != 0;
            string? binary = null;
            long? pid = null;
            if (win32 && service.State != ServiceState.Stopped && service.Binary is not null)
            {
                ulong image = Alloc(Math.Max(layout.ProcessBinaryPath, layout.ProcessId) + 8);
                _image.Write64(p.Dtb, image + (ulong)layout.ProcessBinaryPath, String(service.Binary));
                _image.Write32(p.Dtb, image + (ulong)layout.ProcessId, (uint)(service.Pid ?? 0));
                _image.Write64(p.Dtb, record + (ulong)layout.ServiceProcess, image);
                binary = service.Binary;
                pid = service.State == ServiceState.Running ? service.Pid ?? 0 : null;
            }
            else if (!win32 && service.Binary is not null)
            {
                _image.Write64(p.Dtb, record + (ulong)layout.DriverName, String(service.Binary));
                binary = service.Binary;
            }
            laid.Add(new LaidOutService(record, order, pid, service.Start, service.State, service.Type, service.Name, display, binary));
            previous = record;
        }
        _image.Write32(p.Dtb, header, ServiceRecordLayouts.HeaderTag);
        _image.Write64(p.Dtb, header + ServiceRecordLayouts.HeaderRecord, previous);
        return laid;
    }
}
