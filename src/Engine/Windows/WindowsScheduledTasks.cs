using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Core;

namespace CloudMem.Engine.Windows;

/// <summary>The Task Scheduler's registry cache for windows.registry.persistence.</summary>
public static partial class WindowsPersistence
{
    private const ushort ExecAction = 0x6666, ComAction = 0x7777, EmailAction = 0x8888, MessageAction = 0x9999;
    private const int MaxTaskDepth = 16;

    /// <summary>
    /// Every task of TaskCache\Tasks\{GUID}: its Path and its Actions decoded. TaskCache\Tree\FOLDER\...\NAME holds
    /// each task's Id and security descriptor (SD); a task absent from the tree, or whose tree key has no SD, is hidden
    /// from the scheduler's listing (a known way to hide a task).
    /// </summary>
    private static void Tasks(RegistryHive software, List<PersistenceRow> rows, List<string> notes, CancellationToken ct)
    {
        var tree = new Dictionary<string, (string Path, bool HasSd)>(StringComparer.OrdinalIgnoreCase);
        if (Open(software, TaskCache + @"\Tree", notes) is { } root)
        {
            Tree(software, root, TaskCache + @"\Tree", "", tree, notes, 0, ct);
        }
        string tasksPath = TaskCache + @"\Tasks";
        if (Open(software, tasksPath, notes) is not { } tasks)
        {
            return;
        }
        var faults = new List<CellFault>();
        foreach (RegistryKey task in RegistryKeys.Subkeys(software, tasks, faults))
        {
            ct.ThrowIfCancellationRequested();
            string keyPath = $@"{tasksPath}\{task.Name}";
            List<RegistryValue> values = Values(software, task, keyPath, notes);
            RegistryValue? path = values.FirstOrDefault(v => v.Name.Equals("Path", StringComparison.OrdinalIgnoreCase));
            RegistryValue? actions = values.FirstOrDefault(v => v.Name.Equals("Actions", StringComparison.OrdinalIgnoreCase));
            string? doubt = path?.Fault?.ToString() ?? actions?.Fault?.ToString();
            string? data = null;
            if (actions?.Data is { } blob)
            {
                data = DecodeActions(blob, out string? why);
                doubt ??= why is null ? null : $"Actions: {why}";
            }
            else if (actions is null)
            {
                doubt ??= "no Actions value";
            }
            string? hidden = !tree.TryGetValue(task.Name, out var entry) ? @"not under TaskCache\Tree (hidden from the scheduler's listing)"
                : !entry.HasSd ? $@"its TaskCache\Tree key ({entry.Path}) has no SD value (hidden from the scheduler's listing)" : null;
            rows.Add(Row(PersistenceKind.ScheduledTask, software, keyPath, task, Text(path) ?? (tree.TryGetValue(task.Name, out entry) ? entry.Path : null),
                data, doubt, Join(hidden, Judge(data))));
        }
        notes.AddRange(faults.Select(f => $@"{software.Name}: {tasksPath}: a task's key did not read: {f} (that task is missing)"));
    }

    /// <summary>Collects the tree's tasks (keys with an Id value) by id: their path and whether they have an SD value.</summary>
    private static void Tree(RegistryHive hive, RegistryKey key, string keyPath, string taskPath, Dictionary<string, (string, bool)> tree,
        List<string> notes, int depth, CancellationToken ct)
    {
        var faults = new List<CellFault>();
        foreach (RegistryKey child in RegistryKeys.Subkeys(hive, key, faults))
        {
            ct.ThrowIfCancellationRequested();
            string childKey = $@"{keyPath}\{child.Name}", childTask = $@"{taskPath}\{child.Name}";
            List<RegistryValue> values = Values(hive, child, childKey, notes);
            if (values.FirstOrDefault(v => v.Name.Equals("Id", StringComparison.OrdinalIgnoreCase)) is { Data: { } id } && tree.Count < AnalysisLimits.Default.MaxKeyEntries)
            {
                tree[RegistryKeys.Utf16(id)] = (childTask, values.Any(v => v.Name.Equals("SD", StringComparison.OrdinalIgnoreCase)));
            }
            if (child.StableSubkeys + child.VolatileSubkeys > 0 && depth < MaxTaskDepth)
            {
                Tree(hive, child, childKey, childTask, tree, notes, depth + 1, ct);
            }
        }
        notes.AddRange(faults.Select(f => $@"{hive.Name}: {keyPath}: a key did not read: {f} (tasks under it may show as hidden)"));
    }

    /// <summary>
    /// The Actions blob of a cached task: u16 version, (version 3) a counted UTF-16 context, then actions: u16 magic
    /// (0x6666 exec: id, command, arguments, working directory, version 3 u16 flags; 0x7777 COM handler: id, CLSID,
    /// data; 0x8888 e-mail; 0x9999 message box), strings as u32 byte length + UTF-16. Exec actions as "command
    /// arguments", COM handlers as "COM {CLSID} data", joined by " | ". Null with the reason when it does not decode.
    /// </summary>
    public static string? DecodeActions(ReadOnlySpan<byte> blob, out string? why)
    {
        var reader = new ActionReader(blob);
        var actions = new List<string>();
        if (!reader.U16(out ushort version) || (version == 3 && !reader.Text(out _)))
        {
            why = "shorter than its header";
            return null;
        }
        while (!reader.AtEnd && actions.Count < 64)
        {
            if (!reader.U16(out ushort magic) || !reader.Text(out _))
            {
                why = $"action {actions.Count + 1} is cut short";
                return actions.Count > 0 ? string.Join(" | ", actions) : null;
            }
            bool ok;
            switch (magic)
            {
                case ExecAction:
                    ok = reader.Text(out string command) & reader.Text(out string arguments) & reader.Text(out _) & (version != 3 || reader.U16(out _));
                    actions.Add(arguments.Length > 0 ? $"{command} {arguments}" : command);
                    break;
                case ComAction:
                    ok = reader.Guid(out Guid clsid) & reader.Text(out string data);
                    actions.Add($"COM {clsid:B} {data}".TrimEnd());
                    break;
                case EmailAction:
                case MessageAction:
                    actions.Add(magic == EmailAction ? "send an e-mail" : "show a message box");
                    why = null;
                    return string.Join(" | ", actions);         // their remaining fields are not needed; stop here
                default:
                    why = $"unknown action type 0x{magic:X4}";
                    return actions.Count > 0 ? string.Join(" | ", actions) : null;
            }
            if (!ok)
            {
                why = $"action {actions.Count} is cut short";
                return string.Join(" | ", actions);
            }
        }
        why = actions.Count == 0 ? "no actions" : null;
        return actions.Count == 0 ? null : string.Join(" | ", actions);
    }

    /// <summary>Bounded reader of an Actions blob.</summary>
    private ref struct ActionReader(ReadOnlySpan<byte> data)
    {
        private readonly ReadOnlySpan<byte> _data = data;
        private int _at;

        public readonly bool AtEnd => _at >= _data.Length;

        public bool U16(out ushort value)
        {
            value = 0;
            if (_at + 2 > _data.Length)
            {
                return false;
            }
            value = BinaryPrimitives.ReadUInt16LittleEndian(_data[_at..]);
            _at += 2;
            return true;
        }

        public bool Text(out string value)
        {
            value = "";
            if (_at + 4 > _data.Length)
            {
                return false;
            }
            uint length = BinaryPrimitives.ReadUInt32LittleEndian(_data[_at..]);
            if (length > (uint)(_data.Length - _at - 4))
            {
                return false;
            }
            value = Encoding.Unicode.GetString(_data.Slice(_at + 4, (int)length & ~1));
            _at += 4 + (int)length;
            return true;
        }

        public bool Guid(out Guid value)
        {
            value = System.Guid.Empty;
            if (_at + 16 > _data.Length)
            {
                return false;
            }
            value = new Guid(_data.Slice(_at, 16));
            _at += 16;
            return true;
        }
    }
}
