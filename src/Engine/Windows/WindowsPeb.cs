using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>windows.cmdline: one row per process.</summary>
/// <param name="Args">_RTL_USER_PROCESS_PARAMETERS.CommandLine, or null when it could not be read.</param>
/// <param name="Note">Why Args is null ("Required memory at 0x... is not valid (...)", "no PEB ...").</param>
/// <param name="Pid">UniqueProcessId.</param>
/// <param name="Process">ImageFileName.</param>
public sealed record WindowsCmdLine(long Pid, string Process, string? Args, string? Note);

/// <summary>windows.envars: one row per variable of a process's environment block.</summary>
/// <param name="Block">Address of the environment block (user space).</param>
/// <param name="Value">Variable value.</param>
/// <param name="Pid">UniqueProcessId.</param>
/// <param name="Process">ImageFileName.</param>
/// <param name="Variable">Variable name.</param>
public sealed record WindowsEnvar(long Pid, string Process, [property: Hex] ulong Block, string Variable, string Value);

/// <summary>windows.dlllist: one row per module on the PEB's InLoadOrderModuleList.</summary>
/// <param name="Base">DllBase.</param>
/// <param name="Size">SizeOfImage.</param>
/// <param name="Name">BaseDllName (null when unreadable).</param>
/// <param name="Path">FullDllName (null when unreadable).</param>
/// <param name="LoadOrder">Position on the list, from 0 (the executable).</param>
/// <param name="LoadTime">_LDR_DATA_TABLE_ENTRY.LoadTime (Windows 8+), or null.</param>
/// <param name="Pid">UniqueProcessId.</param>
/// <param name="Process">ImageFileName.</param>
public sealed record WindowsDll(long Pid, string Process, [property: Hex] ulong Base, [property: Hex] ulong Size, string? Name, string? Path,
    int LoadOrder, DateTimeOffset? LoadTime);

/// <summary>Which PEB loader list to walk.</summary>
public enum LoaderList
{
    /// <summary>InLoadOrderModuleList (what windows.dlllist shows).</summary>
    LoadOrder = 0,

    /// <summary>InMemoryOrderModuleList.</summary>
    MemoryOrder = 1,

    /// <summary>InInitializationOrderModuleList.</summary>
    InitializationOrder = 2,
}

/// <summary>One _LDR_DATA_TABLE_ENTRY found on a loader list.</summary>
/// <param name="Entry">Address of the _LDR_DATA_TABLE_ENTRY.</param>
/// <param name="Path">FullDllName (null when unreadable).</param>
/// <param name="LoadTime">_LDR_DATA_TABLE_ENTRY.LoadTime as a raw FILETIME (0 when absent).</param>
/// <param name="Base">DllBase.</param>
/// <param name="Size">SizeOfImage.</param>
/// <param name="Name">BaseDllName (null when unreadable).</param>
public sealed record WindowsLoadedModule(ulong Entry, ulong Base, ulong Size, string? Name, string? Path, ulong LoadTime)
{
    /// <summary>True when <paramref name="va"/> lies in [Base, Base + Size).</summary>
    public bool Contains(ulong va) => va >= Base && va - Base < Size;
}

/// <summary>
/// The user-space side of a process read through its own page tables: the PEB, the process parameters (command line,
/// environment) and the loader lists. Every walk is bounded and cycle-checked; a failed read ends the walk with a note in
/// Volatility's words ("Required memory at 0x... is not valid").
/// </summary>
public static class WindowsPeb
{
    /// <summary>The _PEB address of a process, or null with the reason (kernel processes have none).</summary>
    public static ulong? TryGetPeb(WindowsKernel kernel, WindowsProcess process, out string? note)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        ArgumentNullException.ThrowIfNull(process);
        var reader = new WindowsMemoryReader(kernel.Kernel);
        WindowsUserLayout layout = WindowsUserLayout.For(kernel);
        if (!reader.TryUInt64(process.Offset + (ulong)layout.ProcessPeb, out ulong peb))
        {
            note = reader.Describe("_EPROCESS.Peb");
            return null;
        }
        if (peb == 0)
        {
            note = "no PEB (a process without a user address space)";
            return null;
        }
        note = null;
        return peb;
    }

    /// <summary>The command line of one process, or null and the reason.</summary>
    public static (string? CommandLine, string? Note) CommandLine(WindowsKernel kernel, WindowsProcess process)
    {
        if (!TryParameters(kernel, process, out WindowsMemoryReader reader, out ulong parameters, out string? note))
        {
            return (null, note);
        }
        WindowsUserLayout layout = WindowsUserLayout.For(kernel);
        return reader.TryUnicodeString(parameters + (ulong)layout.ParamsCommandLine, layout.UnicodeString, out string text)
            ? (text, null)
            : (null, reader.Failure);
    }

    /// <summary>
    /// The environment block of one process as NAME=value pairs in block order, its address, and a note when the block
    /// could not be read (or only in part).
    /// </summary>
    public static (List<KeyValuePair<string, string>> Variables, ulong Block, string? Note) Environment(WindowsKernel kernel, WindowsProcess process)
    {
        var variables = new List<KeyValuePair<string, string>>();
        if (!TryParameters(kernel, process, out WindowsMemoryReader reader, out ulong parameters, out string? note))
        {
            return (variables, 0, note);
        }
        WindowsUserLayout layout = WindowsUserLayout.For(kernel);
        if (!reader.TryUInt64(parameters + (ulong)layout.ParamsEnvironment, out ulong block))
        {
            return (variables, 0, reader.Failure);
        }
        if (block == 0)
        {
            return (variables, 0, "no environment block");
        }
        ulong size = (ulong)AnalysisLimits.Default.MaxEnvironmentBytes;
        if (layout.ParamsEnvironmentSize is int sizeOffset && reader.TryUInt64(parameters + (ulong)sizeOffset, out ulong recorded)
            && recorded > 0 && recorded <= size)
        {
            size = recorded;
        }
        // Read page by page up to the terminating empty string (two UTF-16 NULs); a fault ends the block with a note.
        using var bytes = new MemoryStream();
        byte[] page = new byte[0x1000];
        int terminator = -1;
        note = null;
        while ((ulong)bytes.Length < size)
        {
            ulong at = block + (ulong)bytes.Length;
            int want = (int)Math.Min((ulong)page.Length - (at & 0xFFF), size - (ulong)bytes.Length);
            int got = reader.Memory.Read(at, page.AsSpan(0, want));
            int from = Math.Max(0, (int)bytes.Length - 2) & ~1;
            bytes.Write(page, 0, got);
            terminator = FindEmptyString(bytes.GetBuffer().AsSpan(0, (int)bytes.Length), from);
            if (terminator >= 0)
            {
                break;
            }
            if (got < want)
            {
                reader.TryRead(at + (ulong)got, page.AsSpan(0, 1));
                note = $"environment block cut short after 0x{bytes.Length:X} bytes: {reader.Failure}";
                break;
            }
        }
        if (terminator < 0 && note is null)
        {
            note = $"environment block at 0x{block:X} has no terminating empty string within 0x{size:X} bytes";
        }
        int length = terminator >= 0 ? terminator : (int)bytes.Length & ~1;
        string text = Encoding.Unicode.GetString(bytes.GetBuffer(), 0, length);
        foreach (string entry in text.Split('\0'))
        {
            if (entry.Length == 0)
            {
                continue;
            }
            int eq = entry.IndexOf('=', 1);
            variables.Add(eq < 0 ? new(entry, "") : new(entry[..eq], entry[(eq + 1)..]));
        }
        return (variables, block, note);
    }

    /// <summary>The entries of one loader list in list order (see <see cref="LoaderLists"/>).</summary>
    public static (List<WindowsLoadedModule> Modules, List<string> Notes) Modules(WindowsKernel kernel, WindowsProcess process,
        LoaderList list = LoaderList.LoadOrder, CancellationToken ct = default)
    {
        (List<WindowsLoadedModule>[] lists, List<string> notes) = LoaderLists(kernel, process, [list], ct);
        return (lists[(int)list], notes);
    }

    /// <summary>
    /// The entries of the loader lists <paramref name="which"/> in list order, indexed by <see cref="LoaderList"/> (lists
    /// not asked for are empty). _EPROCESS.Peb and _PEB.Ldr are read once for all of them. Each walk stops with a note
    /// (prefixed with the list's name) at a cycle, a bad pointer, an entry that does not read or
    /// <see cref="AnalysisLimits.MaxProcessModules"/>.
    /// </summary>
    public static (List<WindowsLoadedModule>[] Lists, List<string> Notes) LoaderLists(WindowsKernel kernel, WindowsProcess process,
        IReadOnlyCollection<LoaderList> which, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(which);
        List<WindowsLoadedModule>[] lists = [[], [], []];
        var notes = new List<string>();
        ulong? peb = TryGetPeb(kernel, process, out string? note);
        if (peb is null)
        {
            notes.Add(note!);
            return (lists, notes);
        }
        WindowsUserLayout layout = WindowsUserLayout.For(kernel);
        var reader = new WindowsMemoryReader(kernel.ProcessSpace(process.Dtb));
        if (!reader.TryUInt64(peb.Value + (ulong)layout.PebLdr, out ulong ldr))
        {
            notes.Add(reader.Describe("_PEB.Ldr"));
            return (lists, notes);
        }
        if (ldr == 0)
        {
            notes.Add("_PEB.Ldr is null (loader not initialised)");
            return (lists, notes);
        }
        foreach (LoaderList list in which.Distinct())
        {
            lists[(int)list] = Walk(reader, layout, ldr, list, notes, ct);
        }
        return (lists, notes);
    }

    private static List<WindowsLoadedModule> Walk(WindowsMemoryReader reader, WindowsUserLayout layout, ulong ldr, LoaderList list, List<string> notes, CancellationToken ct)
    {
        var modules = new List<WindowsLoadedModule>();
        int linkOffset = layout.EntryLinks[(int)list];
        string name = list switch { LoaderList.LoadOrder => "InLoadOrderModuleList", LoaderList.MemoryOrder => "InMemoryOrderModuleList", _ => "InInitializationOrderModuleList" };
        ListWalk walk = KernelLists.Circular(reader.Memory, ldr + (ulong)layout.LdrLists[(int)list], "modules",
            AnalysisLimits.Default.MaxProcessModules, a => !KernelLists.IsKernelAddress(a), cancellationToken: ct);
        foreach (ulong link in walk.Entries)
        {
            ulong entry = link - (ulong)linkOffset;
            if (!reader.TryUInt64(entry + (ulong)layout.EntryDllBase, out ulong dllBase)
                || !reader.TryUInt32(entry + (ulong)layout.EntrySize, out uint size))
            {
                notes.Add($"{name}: entry 0x{entry:X} does not read after {modules.Count} modules ({reader.Failure}); walk stopped");
                return modules;
            }
            string? baseName = reader.TryUnicodeString(entry + (ulong)layout.EntryBaseName, layout.UnicodeString, out string b) ? b : null;
            if (baseName is null)
            {
                notes.Add($"module at 0x{dllBase:X}: BaseDllName: {reader.Failure}");
            }
            string? fullName = reader.TryUnicodeString(entry + (ulong)layout.EntryFullName, layout.UnicodeString, out string f) ? f : null;
            if (fullName is null)
            {
                notes.Add($"module at 0x{dllBase:X}: FullDllName: {reader.Failure}");
            }
            ulong loadTime = layout.EntryLoadTime is int lt && reader.TryUInt64(entry + (ulong)lt, out ulong t) ? t : 0;
            modules.Add(new WindowsLoadedModule(entry, dllBase, size, baseName, fullName, loadTime));
        }
        if (walk.Note is not null)
        {
            notes.Add($"{name}: {walk.Note}");
        }
        return modules;
    }

    /// <summary>The modules on any of the three loader lists (by base, first seen wins), for resolving addresses to modules.</summary>
    public static (List<WindowsLoadedModule> Modules, List<string> Notes) AllModules(WindowsKernel kernel, WindowsProcess process, CancellationToken ct = default)
    {
        (List<WindowsLoadedModule>[] lists, List<string> notes) = LoaderLists(kernel, process, Enum.GetValues<LoaderList>(), ct);
        var bases = new HashSet<ulong>();
        return ([.. lists.SelectMany(l => l).Where(m => bases.Add(m.Base))], notes);
    }

    /// <summary>windows.cmdline. Processes are read on <paramref name="degreeOfParallelism"/> threads (null: the scan threads' default), rows in list order.</summary>
    public static RowsReport<WindowsCmdLine> CmdLine(WindowsKernel kernel, ISet<long>? pids = null, CancellationToken ct = default, int? degreeOfParallelism = null)
    {
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.Select(kernel, pids, ct);
        (string? CommandLine, string? Note)[] lines = OrderedParallel.Map(processes, p => CommandLine(kernel, p), ct, degreeOfParallelism);
        var rows = new List<WindowsCmdLine>(processes.Count);
        for (int i = 0; i < processes.Count; i++)
        {
            rows.Add(new WindowsCmdLine(processes[i].Pid, processes[i].ImageFileName, lines[i].CommandLine, lines[i].Note));
        }
        return new RowsReport<WindowsCmdLine>("windows.cmdline", rows, notes);
    }

    /// <summary>windows.envars. Processes are read on <paramref name="degreeOfParallelism"/> threads (null: the scan threads' default), rows in list order.</summary>
    public static RowsReport<WindowsEnvar> Envars(WindowsKernel kernel, ISet<long>? pids = null, CancellationToken ct = default, int? degreeOfParallelism = null)
    {
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.Select(kernel, pids, ct);
        var rows = new List<WindowsEnvar>();
        var blocks = OrderedParallel.Map(processes, p => Environment(kernel, p), ct, degreeOfParallelism);
        for (int i = 0; i < processes.Count; i++)
        {
            WindowsProcess p = processes[i];
            (List<KeyValuePair<string, string>> variables, ulong block, string? note) = blocks[i];
            rows.AddRange(variables.Select(v => new WindowsEnvar(p.Pid, p.ImageFileName, block, v.Key, v.Value)));
            if (note is not null)
            {
                notes.Add($"{p.Pid} {p.ImageFileName}: {note}");
            }
        }
        return new RowsReport<WindowsEnvar>("windows.envars", rows, notes);
    }

    /// <summary>windows.dlllist: InLoadOrderModuleList of each process. Processes are read on <paramref name="degreeOfParallelism"/> threads (null: the scan threads' default), rows in list order.</summary>
    public static RowsReport<WindowsDll> DllList(WindowsKernel kernel, ISet<long>? pids = null, CancellationToken ct = default, int? degreeOfParallelism = null)
    {
        (List<WindowsProcess> processes, List<string> notes) = WindowsProcesses.Select(kernel, pids, ct);
        var rows = new List<WindowsDll>();
        var lists = OrderedParallel.Map(processes, p => Modules(kernel, p, ct: ct), ct, degreeOfParallelism);
        for (int i = 0; i < processes.Count; i++)
        {
            WindowsProcess p = processes[i];
            (List<WindowsLoadedModule> modules, List<string> moduleNotes) = lists[i];
            rows.AddRange(modules.Select((m, i) => new WindowsDll(p.Pid, p.ImageFileName, m.Base, m.Size, m.Name, m.Path, i,
                WindowsProcesses.FileTime(m.LoadTime))));
            notes.AddRange(moduleNotes.Where(n => !n.StartsWith("no PEB", StringComparison.Ordinal)).Select(n => $"{p.Pid} {p.ImageFileName}: {n}"));
        }
        return new RowsReport<WindowsDll>("windows.dlllist", rows, notes);
    }

    /// <summary>Byte offset of the first empty UTF-16 string (a NUL right after a NUL, or at the start), searching from the even offset <paramref name="from"/>.</summary>
    private static int FindEmptyString(ReadOnlySpan<byte> block, int from)
    {
        for (int i = from; i + 1 < block.Length; i += 2)
        {
            if (block[i] == 0 && block[i + 1] == 0 && (i == 0 || (block[i - 2] == 0 && block[i - 1] == 0)))
            {
                return i;
            }
        }
        return -1;
    }

    private static bool TryParameters(WindowsKernel kernel, WindowsProcess process, out WindowsMemoryReader reader, out ulong parameters, out string? note)
    {
        parameters = 0;
        reader = new WindowsMemoryReader(kernel.ProcessSpace(process.Dtb));
        ulong? peb = TryGetPeb(kernel, process, out note);
        if (peb is null)
        {
            return false;
        }
        WindowsUserLayout layout = WindowsUserLayout.For(kernel);
        if (!reader.TryUInt64(peb.Value + (ulong)layout.PebParameters, out parameters))
        {
            note = reader.Failure;
            return false;
        }
        if (parameters == 0)
        {
            note = "_PEB.ProcessParameters is null";
            return false;
        }
        return true;
    }
}
