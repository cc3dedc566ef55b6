using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.RegularExpressions;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>Where an autostart entry lives.</summary>
public enum PersistenceKind
{
    /// <summary>A value of a Run key (HKLM, Wow6432Node or a user's NTUSER.DAT).</summary>
    Run,
    /// <summary>A value of a RunOnce key.</summary>
    RunOnce,
    /// <summary>A service (SYSTEM\ControlSet\Services\NAME) that starts by itself (boot, system, automatic) or looks wrong.</summary>
    Service,
    /// <summary>Winlogon's Shell value (the user's shell, explorer.exe by default).</summary>
    WinlogonShell,
    /// <summary>Winlogon's Userinit value (userinit.exe by default).</summary>
    WinlogonUserinit,
    /// <summary>An Image File Execution Options Debugger: runs instead of the named program.</summary>
    IfeoDebugger,
    /// <summary>A scheduled task in the Task Scheduler's registry cache (TaskCache\Tasks).</summary>
    ScheduledTask,
}

/// <summary>A service's Start value (when the service control manager or kernel loads it).</summary>
public enum ServiceStartType
{
    /// <summary>Loaded by the boot loader.</summary>
    Boot = 0,
    /// <summary>Loaded by the kernel during initialisation.</summary>
    System = 1,
    /// <summary>Started by the service control manager at boot.</summary>
    Automatic = 2,
    /// <summary>Started on demand.</summary>
    Manual = 3,
    /// <summary>Never started.</summary>
    Disabled = 4,
}

/// <summary>A service's Type value (SERVICE_* flags of winnt.h).</summary>
[Flags]
public enum ServiceTypes
{
    /// <summary>No type bits.</summary>
    None = 0,
    /// <summary>A kernel driver.</summary>
    KernelDriver = 0x1,
    /// <summary>A file system driver.</summary>
    FileSystemDriver = 0x2,
    /// <summary>An adapter.</summary>
    Adapter = 0x4,
    /// <summary>A file system recognizer.</summary>
    RecognizerDriver = 0x8,
    /// <summary>A service in its own process.</summary>
    Win32OwnProcess = 0x10,
    /// <summary>A service sharing a process (svchost) with others: the code is its ServiceDll.</summary>
    Win32ShareProcess = 0x20,
    /// <summary>A per-user service template.</summary>
    UserService = 0x40,
    /// <summary>A per-user service instance.</summary>
    UserServiceInstance = 0x80,
    /// <summary>May interact with the desktop.</summary>
    InteractiveProcess = 0x100,
    /// <summary>A packaged service.</summary>
    PackagedService = 0x200,
}

/// <summary>An autostart entry in the registry (windows.registry.persistence).</summary>
/// <param name="Kind">Which mechanism.</param>
/// <param name="Hive">The hive's name (its file path; a user's NTUSER.DAT names the user).</param>
/// <param name="HiveOffset">The _CMHIVE.</param>
/// <param name="KeyPath">The key, relative to the hive's root.</param>
/// <param name="ValueName">The value (Run: the entry's name; service: ImagePath; task: the task's path).</param>
/// <param name="Data">What runs: the command line, ImagePath, Debugger, or the task's actions (exec: command and arguments).</param>
/// <param name="LastWriteTime">The key's last write.</param>
/// <param name="StartType">A service's Start.</param>
/// <param name="ServiceType">A service's Type.</param>
/// <param name="ServiceDll">A shared-process service's Parameters\ServiceDll (or ServiceDll on its key).</param>
/// <param name="Suspicious">An obvious sign of abuse (see <see cref="WindowsPersistence.Judge"/>).</param>
/// <param name="Reason">Why it is suspicious.</param>
/// <param name="Doubt">What could not be read (the cell and why), or why the task's actions could not be decoded.</param>
public sealed record PersistenceRow(PersistenceKind Kind, string? Hive, [property: Hex] ulong HiveOffset, string KeyPath, string? ValueName, string? Data,
    DateTimeOffset? LastWriteTime, ServiceStartType? StartType, ServiceTypes? ServiceType, string? ServiceDll, bool Suspicious, string? Reason, string? Doubt);

/// <summary>
/// windows.registry.persistence: the registry's autostart entries, every cell read through the hives in memory. Run
/// and RunOnce (SOFTWARE, its Wow6432Node, and every loaded NTUSER.DAT), services of the current control set that
/// start by themselves (or whose image or DLL looks wrong), Winlogon Shell and Userinit, IFEO Debuggers, and the
/// Task Scheduler's cache (TaskCache\Tasks with the Actions blob decoded; a task whose Tree key lacks its SD value is
/// hidden from the scheduler's listing). Each row is judged by plain rules: user-writable directories, encoded
/// PowerShell, URLs, a non-default Winlogon value, any IFEO Debugger, a hidden task.
/// </summary>
public static partial class WindowsPersistence
{
    private const string RunKey = @"Microsoft\Windows\CurrentVersion\";
    private const string Winlogon = @"Microsoft\Windows NT\CurrentVersion\Winlogon";
    private const string Ifeo = @"Microsoft\Windows NT\CurrentVersion\Image File Execution Options";
    private const string TaskCache = @"Microsoft\Windows NT\CurrentVersion\Schedule\TaskCache";

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("windows.registry.persistence",
            "Registry autostart entries (Run/RunOnce machine and per user, services, Winlogon, IFEO debuggers, scheduled-task cache) with last-write times and suspicious flags",
            TargetOs.Windows),
            (c, a, ct) => Persistence(c.Windows(ct), ct));

    /// <summary>windows.registry.persistence.</summary>
    public static RowsReport<PersistenceRow> Persistence(WindowsKernel kernel, CancellationToken ct = default)
    {
        (List<RegistryHive> hives, List<string> notes) = RegistryHive.List(kernel, ct);
        var rows = new List<PersistenceRow>();
        RegistryHive? software = hives.FirstOrDefault(h => WindowsHashDump.Named(h, "SOFTWARE"))
            ?? hives.FirstOrDefault(h => RegistryKeys.Open(h, Winlogon, out _, []) is not null);
        if (software is not null)
        {
            foreach (string prefix in new[] { "", @"Wow6432Node\" })
            {
                RunValues(software, prefix + RunKey + "Run", PersistenceKind.Run, rows, notes);
                RunValues(software, prefix + RunKey + "RunOnce", PersistenceKind.RunOnce, rows, notes);
                Debuggers(software, prefix + Ifeo, rows, notes, ct);
            }
            WinlogonValues(software, Winlogon, rows, notes);
            Tasks(software, rows, notes, ct);
        }
        else
        {
            notes.Add($"no SOFTWARE hive among the {hives.Count} hives read: machine Run keys, Winlogon, IFEO and tasks are not listed");
        }
        foreach (RegistryHive user in hives.Where(IsUserHive))
        {
            foreach (string prefix in new[] { @"Software\", @"Software\Wow6432Node\" })
            {
                RunValues(user, prefix + RunKey + "Run", PersistenceKind.Run, rows, notes);
                RunValues(user, prefix + RunKey + "RunOnce", PersistenceKind.RunOnce, rows, notes);
            }
            WinlogonValues(user, @"Software\" + Winlogon, rows, notes);
        }
        if (WindowsHashDump.SystemHive(hives) is { } system)
        {
            Services(system, rows, notes, ct);
        }
        else
        {
            notes.Add($"no SYSTEM hive among the {hives.Count} hives read: services are not listed");
        }
        return new RowsReport<PersistenceRow>("windows.registry.persistence", rows, notes);
    }

    /// <summary>A user's hive (NTUSER.DAT under \REGISTRY\USER\SID, not its _Classes hive).</summary>
    private static bool IsUserHive(RegistryHive hive)
        => hive.FileUserName?.EndsWith("ntuser.dat", StringComparison.OrdinalIgnoreCase) == true
           || (hive.FileFullPath?.StartsWith(@"\REGISTRY\USER\", StringComparison.OrdinalIgnoreCase) == true
               && !hive.FileFullPath.EndsWith("_Classes", StringComparison.OrdinalIgnoreCase));

    /// <summary>The key at <paramref name="path"/>, null when absent; a cell that did not read on the way is a note.</summary>
    private static RegistryKey? Open(RegistryHive hive, string path, List<string> notes)
    {
        var faults = new List<CellFault>();
        RegistryKey? key = RegistryKeys.Open(hive, path, out _, faults);
        if (key is null && faults.Count > 0)
        {
            notes.Add($"{hive.Name}: {path}: {faults[^1]} (its entries are missing)");
        }
        return key;
    }

    private static List<RegistryValue> Values(RegistryHive hive, RegistryKey key, string path, List<string> notes)
    {
        var faults = new List<CellFault>();
        List<RegistryValue> values = RegistryKeys.Values(hive, key, faults);
        notes.AddRange(faults.Select(f => $@"{hive.Name}: {path}: a value did not read: {f}"));
        return values;
    }

    private static string? Text(RegistryValue? value) => value?.Data is { } d ? RegistryKeys.Render(value.Type, d) : null;

    private static PersistenceRow Row(PersistenceKind kind, RegistryHive hive, string path, RegistryKey key, string? name, string? data, string? doubt,
        string? reason, ServiceStartType? start = null, ServiceTypes? type = null, string? dll = null)
        => new(kind, hive.Name, hive.Address, path, name, data, key.LastWrite, start, type, dll, reason is not null, reason, doubt);

    private static void RunValues(RegistryHive hive, string path, PersistenceKind kind, List<PersistenceRow> rows, List<string> notes)
    {
        if (Open(hive, path, notes) is not { } key)
        {
            return;
        }
        foreach (RegistryValue value in Values(hive, key, path, notes))
        {
            string? data = Text(value);
            rows.Add(Row(kind, hive, path, key, value.Name, data, value.Fault?.ToString(), Judge(data)));
        }
    }

    private static void WinlogonValues(RegistryHive hive, string path, List<PersistenceRow> rows, List<string> notes)
    {
        if (Open(hive, path, notes) is not { } key)
        {
            return;
        }
        foreach (RegistryValue value in Values(hive, key, path, notes))
        {
            bool shell = value.Name.Equals("Shell", StringComparison.OrdinalIgnoreCase);
            if (!shell && !value.Name.Equals("Userinit", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }
            string? data = Text(value);
            string? reason = data is null ? null : shell ? NonDefaultShell(data) : NonDefaultUserinit(data);
            rows.Add(Row(shell ? PersistenceKind.WinlogonShell : PersistenceKind.WinlogonUserinit, hive, path, key, value.Name, data,
                value.Fault?.ToString(), Join(reason, Judge(data))));
        }
    }

    /// <summary>Why a Winlogon Shell is not the default (explorer.exe), or null.</summary>
    public static string? NonDefaultShell(string shell)
    {
        ArgumentNullException.ThrowIfNull(shell);
        string s = shell.Trim().Trim('"');
        return s.Equals("explorer.exe", StringComparison.OrdinalIgnoreCase) || s.EndsWith(@"\Windows\explorer.exe", StringComparison.OrdinalIgnoreCase)
            ? null : "Winlogon Shell is not explorer.exe";
    }

    /// <summary>Why a Winlogon Userinit is not the default (system32\userinit.exe, comma terminated), or null.</summary>
    public static string? NonDefaultUserinit(string userinit)
    {
        ArgumentNullException.ThrowIfNull(userinit);
        string[] parts = [.. userinit.Split(',').Select(p => p.Trim().Trim('"')).Where(p => p.Length > 0)];
        bool normal = parts.Length == 1 && (parts[0].Equals("userinit.exe", StringComparison.OrdinalIgnoreCase)
            || parts[0].EndsWith(@"\system32\userinit.exe", StringComparison.OrdinalIgnoreCase));
        return normal ? null : "Winlogon Userinit runs more than system32\\userinit.exe";
    }

    private static void Debuggers(RegistryHive hive, string path, List<PersistenceRow> rows, List<string> notes, CancellationToken ct)
    {
        if (Open(hive, path, notes) is not { } ifeo)
        {
            return;
        }
        var faults = new List<CellFault>();
        foreach (RegistryKey program in RegistryKeys.Subkeys(hive, ifeo, faults))
        {
            ct.ThrowIfCancellationRequested();
            string keyPath = $@"{path}\{program.Name}";
            if (Values(hive, program, keyPath, notes).FirstOrDefault(v => v.Name.Equals("Debugger", StringComparison.OrdinalIgnoreCase)) is { } debugger)
            {
                string? data = Text(debugger);
                rows.Add(Row(PersistenceKind.IfeoDebugger, hive, keyPath, program, debugger.Name, data, debugger.Fault?.ToString(),
                    Join($"an IFEO Debugger runs instead of {program.Name}", Judge(data))));
            }
        }
        notes.AddRange(faults.Select(f => $@"{hive.Name}: {path}: a program's key did not read: {f} (its Debugger is unknown)"));
    }

    /// <summary>The services of the current control set (Select\Current) that start by themselves, or whose image or DLL is suspicious.</summary>
    private static void Services(RegistryHive system, List<PersistenceRow> rows, List<string> notes, CancellationToken ct)
    {
        uint set = 1;
        if (Open(system, "Select", notes) is { } select
            && Values(system, select, "Select", notes).FirstOrDefault(v => v.Name == "Current") is { Data.Length: >= 4 } current)
        {
            set = BinaryPrimitives.ReadUInt32LittleEndian(current.Data);
        }
        string path = $@"ControlSet{set:D3}\Services";
        if (Open(system, path, notes) is not { } services)
        {
            notes.Add($"{system.Name}: no {path}: services are not listed");
            return;
        }
        var faults = new List<CellFault>();
        int quiet = 0;
        foreach (RegistryKey service in RegistryKeys.Subkeys(system, services, faults))
        {
            ct.ThrowIfCancellationRequested();
            string keyPath = $@"{path}\{service.Name}";
            List<RegistryValue> values = Values(system, service, keyPath, notes);
            RegistryValue? Named(IEnumerable<RegistryValue> list, string name) => list.FirstOrDefault(v => v.Name.Equals(name, StringComparison.OrdinalIgnoreCase));
            uint? Number(string name) => Named(values, name) is { Data.Length: >= 4 } v ? BinaryPrimitives.ReadUInt32LittleEndian(v.Data) : null;
            RegistryValue? image = Named(values, "ImagePath");
            string? imagePath = Text(image);
            string? dll = Text(Named(values, "ServiceDll"));
            if (dll is null && RegistryKeys.Subkeys(system, service, faults).FirstOrDefault(k => k.Name.Equals("Parameters", StringComparison.OrdinalIgnoreCase)) is { } parameters)
            {
                dll = Text(Named(Values(system, parameters, keyPath + @"\Parameters", notes), "ServiceDll"));
            }
            uint? start = Number("Start"), type = Number("Type");
            string? reason = Join(Judge(imagePath), Judge(dll) is { } bad ? "ServiceDll: " + bad : null);
            if (start is > 2 && reason is null)
            {
                quiet++;
                continue;
            }
            rows.Add(Row(PersistenceKind.Service, system, keyPath, service, "ImagePath", imagePath, image?.Fault?.ToString(), reason,
                start is { } s ? (ServiceStartType)s : null, type is { } t ? (ServiceTypes)t : null, dll));
        }
        notes.AddRange(faults.Select(f => $@"{system.Name}: {path}: a service key did not read: {f} (that service is missing)"));
        if (quiet > 0)
        {
            notes.Add($"{quiet} service(s) that start on demand or are disabled, with nothing suspicious, are not listed");
        }
    }

    private static string? Join(string? a, string? b) => a is null ? b : b is null ? a : $"{a}; {b}";

    /// <summary>
    /// Plain signs of abuse in a command line or path: a user-writable directory (\Users\Public\, \AppData\, \Temp\,
    /// %TEMP%, \ProgramData\, \Downloads\, \$Recycle.Bin\, \PerfLogs\), encoded PowerShell, a URL. Null when none.
    /// </summary>
    public static string? Judge(string? command)
    {
        if (string.IsNullOrEmpty(command))
        {
            return null;
        }
        var reasons = new List<string>();
        if (WritableDirectory().Match(command) is { Success: true } place)
        {
            reasons.Add($"runs from a user-writable directory ({place.Value.Trim('\\', '%')})");
        }
        if (EncodedPowerShell().IsMatch(command))
        {
            reasons.Add("encoded PowerShell command");
        }
        if (command.Contains("http://", StringComparison.OrdinalIgnoreCase) || command.Contains("https://", StringComparison.OrdinalIgnoreCase))
        {
            reasons.Add("a URL in the command");
        }
        return reasons.Count == 0 ? null : string.Join("; ", reasons);
    }

    [GeneratedRegex(@"\\Users\\Public\\|\\AppData\\|\\Temp\\|%TEMP%|%TMP%|\\ProgramData\\|\\Downloads\\|\\\$Recycle\.Bin\\|\\PerfLogs\\", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex WritableDirectory();

    [GeneratedRegex(@"(powershell|pwsh)(\.exe)?\b.*\s-(e|ec|enc|enco|encod|encode|encoded|encodedc|encodedco|encodedcom|encodedcomm|encodedcomma|encodedcomman|encodedcommand)\s+[A-Za-z0-9+/=]{8,}|FromBase64String", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex EncodedPowerShell();
}
