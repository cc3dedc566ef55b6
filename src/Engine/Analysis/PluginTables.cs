using System.Globalization;
using CloudMem.Engine.Linux;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Windows;
using CloudMem.Engine.Windows.Network;
using CloudMem.Engine.Yara;

namespace CloudMem.Engine.Analysis;

/// <summary>
/// The row type of each plugin that rules may name, and the columns that make a row's stable key (what evidence
/// points at, in the plugin's output and in <c>case.sqlite</c>'s <c>row_key</c> column). A plugin missing here still
/// runs and is stored; rules cannot name it, and its rows are keyed by position (<c>row=N</c>).
/// </summary>
public static class PluginTables
{
    private static readonly Dictionary<string, (Type Row, string[] Key)> s_tables = new(StringComparer.Ordinal)
    {
        ["linux.pslist"] = (typeof(LinuxProcess), ["Pid"]),
        ["linux.psaux"] = (typeof(LinuxProcessArgs), ["Pid"]),
        ["linux.pstree"] = (typeof(LinuxTreeRow), ["Pid"]),
        ["linux.psscan"] = (typeof(LinuxScannedTask), ["Pid", "Offset"]),
        ["linux.sockstat"] = (typeof(LinuxSocket), ["Pid", "Fd"]),
        ["linux.lsmod"] = (typeof(LinuxModule), ["Name", "Offset"]),
        ["linux.hidden_modules"] = (typeof(LinuxModuleView), ["Name", "Offset"]),
        ["linux.check_modules"] = (typeof(LinuxModuleView), ["Name", "Offset"]),
        ["linux.maps"] = (typeof(LinuxMapping), ["Pid", "Start"]),
        ["linux.malfind"] = (typeof(LinuxMalfindRow), ["Pid", "Start"]),
        ["linux.envars"] = (typeof(LinuxEnvVar), ["Pid", "Key"]),
        ["linux.bash"] = (typeof(LinuxBashCommand), ["Pid", "Entry"]),
        ["linux.dmesg"] = (typeof(LinuxDmesgRecord), ["Seq"]),
        ["linux.check_syscall"] = (typeof(LinuxSyscallSlot), ["Table", "Index"]),
        ["linux.netfilter"] = (typeof(LinuxNetfilterHook), ["Net", "Family", "HookPoint", "Position"]),
        ["linux.kprobes"] = (typeof(LinuxKprobe), ["Kprobe"]),
        ["linux.secrets"] = (typeof(LinuxSecret), ["Pid", "Address"]),
        ["linux.ip.link"] = (typeof(LinuxInterface), ["NetNs", "Index"]),
        ["linux.ip.addr"] = (typeof(LinuxInterfaceAddress), ["NetNs", "Index", "Address"]),
        ["linux.lsof"] = (typeof(LinuxOpenFile), ["Pid", "Fd"]),
        ["linux.mountinfo"] = (typeof(LinuxMount), ["Namespace", "MountId"]),
        ["linux.elfs"] = (typeof(LinuxElf), ["Pid", "Start"]),
        ["linux.check_idt"] = (typeof(LinuxIdtEntry), ["Vector"]),
        ["linux.tty_check"] = (typeof(LinuxTtyHandler), ["Tty", "Function"]),
        ["linux.keyboard_notifiers"] = (typeof(LinuxKeyboardNotifier), ["Block"]),
        ["linux.ebpf"] = (typeof(LinuxBpfProgram), ["Id"]),
        ["linux.ebpf.maps"] = (typeof(LinuxBpfMap), ["Id"]),
        ["linux.ebpf.links"] = (typeof(LinuxBpfLink), ["Id"]),
        ["linux.keys"] = (typeof(LinuxKey), ["Serial"]),
        ["linux.pagecache.files"] = (typeof(LinuxCachedFile), ["Inode"]),
        ["linux.yarascan"] = (typeof(LinuxYaraHit), ["Pid", "Rule", "String", "VirtualAddress"]),
        ["linux.yarascan.physical"] = (typeof(YaraPhysicalHit), ["Rule", "String", "PhysicalAddress"]),
        ["windows.info"] = (typeof(WindowsInfoRow), ["Variable"]),
        ["windows.pslist"] = (typeof(WindowsProcess), ["Pid", "Offset"]),
        ["windows.pstree"] = (typeof(WindowsProcessTreeRow), ["Pid"]),
        ["windows.psscan"] = (typeof(WindowsScannedProcess), ["Pid", "Offset"]),
        ["windows.vadinfo"] = (typeof(WindowsVadRow), ["Pid", "Start"]),
        ["windows.ldrmodules"] = (typeof(WindowsLdrModuleRow), ["Pid", "Base"]),
        ["windows.malfind"] = (typeof(WindowsMalfindRow), ["Pid", "Start"]),
        ["windows.hollowfind"] = (typeof(WindowsHollowRow), ["Pid", "Sign"]),
        ["windows.yarascan"] = (typeof(WindowsYaraHit), ["Pid", "Rule", "String", "VirtualAddress"]),
        ["windows.yarascan.physical"] = (typeof(YaraPhysicalHit), ["Rule", "String", "PhysicalAddress"]),
        ["windows.cmdline"] = (typeof(WindowsCmdLine), ["Pid"]),
        ["windows.envars"] = (typeof(WindowsEnvar), ["Pid", "Variable"]),
        ["windows.dlllist"] = (typeof(WindowsDll), ["Pid", "Base"]),
        ["windows.threads"] = (typeof(WindowsThread), ["Pid", "Tid"]),
        ["windows.getsids"] = (typeof(WindowsSid), ["Pid", "Sid"]),
        ["windows.handles"] = (typeof(WindowsHandle), ["Pid", "HandleValue"]),
        ["windows.modules"] = (typeof(WindowsModule), ["Base"]),
        ["windows.modscan"] = (typeof(WindowsScannedModule), ["Offset"]),
        ["windows.netscan"] = (typeof(WindowsNetScanRow), ["Offset"]),
        ["windows.netstat"] = (typeof(WindowsNetStatRow), ["Offset"]),
        ["windows.registry.hivelist"] = (typeof(HiveRow), ["Offset"]),
        ["windows.registry.printkey"] = (typeof(PrintKeyRow), ["HiveOffset", "Key", "Type", "Name"]),
        ["windows.registry.userassist"] = (typeof(UserAssistRow), ["HiveOffset", "Path", "Name"]),
        ["windows.registry.persistence"] = (typeof(PersistenceRow), ["HiveOffset", "KeyPath", "ValueName"]),
        ["windows.lsadump"] = (typeof(LsaSecretRow), ["Name"]),
        ["windows.ssdt"] = (typeof(SsdtRow), ["Table", "Index"]),
        ["windows.callbacks"] = (typeof(CallbackRow), ["Type", "Slot"]),
        ["windows.filescan"] = (typeof(FileScanRow), ["Offset"]),
        ["windows.svcscan"] = (typeof(Windows.Services.ServiceRow), ["Offset"]),
        ["windows.driverirp"] = (typeof(DriverIrpRow), ["Offset", "Irp"]),
        ["windows.mftscan"] = (typeof(Windows.Files.MftScanRow), ["Offset", "Name", "Namespace"]),
        ["windows.dumpfiles"] = (typeof(Windows.Files.DumpFileRow), ["FileObject", "Section"]),
    };

    /// <summary>The plugins rules may name.</summary>
    public static IReadOnlyCollection<string> Plugins => s_tables.Keys;

    /// <summary>The row type of <paramref name="plugin"/>'s rows, when rules may name it.</summary>
    public static bool TryGetRowType(string plugin, out Type rowType)
    {
        bool found = s_tables.TryGetValue(plugin, out (Type Row, string[] Key) table);
        rowType = table.Row!;
        return found;
    }

    /// <summary>
    /// The stable key of row <paramref name="index"/> of <paramref name="report"/>: its key columns as
    /// <c>name=value</c> joined with commas (hex columns in hex), or <c>row=N</c> for plugins without key columns.
    /// Two rows with the same key get <c>#2</c>, <c>#3</c>... by <see cref="Keys"/>.
    /// </summary>
    public static string KeyOf(IRowsReport report, object row, int index)
    {
        ArgumentNullException.ThrowIfNull(report);
        if (!s_tables.TryGetValue(report.Title, out (Type Row, string[] Key) table) || table.Row != report.RowType)
        {
            return "row=" + index.ToString(CultureInfo.InvariantCulture);
        }
        return string.Join(',', table.Key.Select(k => report.Columns.First(c => c.Name == k)).Select(c => $"{Lower(c.Name)}={c.CellOf(row)}"));
    }

    /// <summary>The keys of every row of <paramref name="report"/>, in row order, unique within the report.</summary>
    public static IReadOnlyList<string> Keys(IRowsReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        var keys = new List<string>(report.BoxedRows.Count);
        IReadOnlyList<object> rows = report.BoxedRows;
        for (int i = 0; i < rows.Count; i++)
        {
            string key = KeyOf(report, rows[i], i);
            int n = seen.TryGetValue(key, out int count) ? count + 1 : 1;
            seen[key] = n;
            keys.Add(n == 1 ? key : $"{key}#{n}");
        }
        return keys;
    }

    private static string Lower(string name) => char.ToLowerInvariant(name[0]) + name[1..];
}
