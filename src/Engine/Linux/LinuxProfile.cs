using CloudMem.Engine.Core;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>
/// The structure layouts the Linux views need, resolved once from the type model (BTF carved from memory, or an ISF):
/// never hard-coded offsets. A field the model lacks is -1 and the views report that value as not available.
/// </summary>
public sealed class LinuxProfile
{
    private LinuxProfile(TypeModel types) => Types = types;

    /// <summary>The type model the offsets came from.</summary>
    public TypeModel Types { get; }

    /// <summary>Size of task_struct.</summary>
    public int TaskSize { get; private init; }
    /// <summary>Offset of task_struct.tasks (the list of all thread-group leaders).</summary>
    public int TaskTasks { get; private init; }
    /// <summary>Offset of task_struct.pid.</summary>
    public int TaskPid { get; private init; }
    /// <summary>Offset of task_struct.tgid.</summary>
    public int TaskTgid { get; private init; }
    /// <summary>Offset of task_struct.comm (the 16-byte command name).</summary>
    public int TaskComm { get; private init; }
    /// <summary>Offset of task_struct.real_parent.</summary>
    public int TaskRealParent { get; private init; }
    /// <summary>Offset of task_struct.mm (null for kernel threads).</summary>
    public int TaskMm { get; private init; }
    /// <summary>Offset of task_struct.flags (PF_* bits).</summary>
    public int TaskFlags { get; private init; }
    /// <summary>Offset of task_struct.cred.</summary>
    public int TaskCred { get; private init; }
    /// <summary>Offset of task_struct.exit_state.</summary>
    public int TaskExitState { get; private init; }
    /// <summary>Offset of task_struct.start_time (nanoseconds since boot).</summary>
    public int TaskStartTime { get; private init; }
    /// <summary>Offset of task_struct.signal.</summary>
    public int TaskSignal { get; private init; }
    /// <summary>Offset of task_struct.thread_pid (the struct pid of the thread).</summary>
    public int TaskThreadPid { get; private init; }
    /// <summary>Offset of signal_struct.nr_threads.</summary>
    public int SignalNrThreads { get; private init; }
    /// <summary>Offset of cred.uid.</summary>
    public int CredUid { get; private init; }
    /// <summary>Offset of cred.gid.</summary>
    public int CredGid { get; private init; }
    /// <summary>Offset of cred.euid.</summary>
    public int CredEuid { get; private init; }
    /// <summary>Offset of cred.egid.</summary>
    public int CredEgid { get; private init; }
    /// <summary>Offset of mm_struct.pgd (the process's top-level page table).</summary>
    public int MmPgd { get; private init; }
    /// <summary>Offset of mm_struct.arg_start (user address of the argument block).</summary>
    public int MmArgStart { get; private init; }
    /// <summary>Offset of mm_struct.arg_end.</summary>
    public int MmArgEnd { get; private init; }
    /// <summary>Offset of mm_struct.env_start (user address of the environment block).</summary>
    public int MmEnvStart { get; private init; }
    /// <summary>Offset of mm_struct.env_end.</summary>
    public int MmEnvEnd { get; private init; }
    /// <summary>Offset of pid.level (the namespace depth).</summary>
    public int PidLevel { get; private init; }
    /// <summary>Offset of pid.numbers (one upid per namespace level).</summary>
    public int PidNumbers { get; private init; }
    /// <summary>Size of struct upid.</summary>
    public int UpidSize { get; private init; }
    /// <summary>Offset of upid.nr (the number seen in that namespace).</summary>
    public int UpidNr { get; private init; }

    /// <summary>Resolves the layouts; throws <see cref="KernelNotFoundException"/> naming what is missing when the
    /// few fields nothing works without are absent.</summary>
    public static LinuxProfile Create(TypeModel types)
    {
        int Offset(string structure, string field) => types.TryGetOffset(structure, field, out int offset) ? offset : -1;
        int Size(string structure) => types.TryGetSize(structure, out int size) ? size : -1;
        var profile = new LinuxProfile(types)
        {
            TaskSize = Size("task_struct"),
            TaskTasks = Offset("task_struct", "tasks"),
            TaskPid = Offset("task_struct", "pid"),
            TaskTgid = Offset("task_struct", "tgid"),
            TaskComm = Offset("task_struct", "comm"),
            TaskRealParent = Offset("task_struct", "real_parent"),
            TaskMm = Offset("task_struct", "mm"),
            TaskFlags = Offset("task_struct", "flags"),
            TaskCred = Offset("task_struct", "cred"),
            TaskExitState = Offset("task_struct", "exit_state"),
            TaskStartTime = Offset("task_struct", "start_time"),
            TaskSignal = Offset("task_struct", "signal"),
            TaskThreadPid = Offset("task_struct", "thread_pid"),
            SignalNrThreads = Offset("signal_struct", "nr_threads"),
            CredUid = Offset("cred", "uid"),
            CredGid = Offset("cred", "gid"),
            CredEuid = Offset("cred", "euid"),
            CredEgid = Offset("cred", "egid"),
            MmPgd = Offset("mm_struct", "pgd"),
            MmArgStart = Offset("mm_struct", "arg_start"),
            MmArgEnd = Offset("mm_struct", "arg_end"),
            MmEnvStart = Offset("mm_struct", "env_start"),
            MmEnvEnd = Offset("mm_struct", "env_end"),
            PidLevel = Offset("pid", "level"),
            PidNumbers = Offset("pid", "numbers"),
            UpidSize = Size("upid"),
            UpidNr = Offset("upid", "nr"),
        };
        var missing = new List<string>();
        foreach ((string name, int value) in new[]
        {
            ("task_struct size", profile.TaskSize), ("task_struct.tasks", profile.TaskTasks), ("task_struct.pid", profile.TaskPid),
            ("task_struct.tgid", profile.TaskTgid), ("task_struct.comm", profile.TaskComm), ("task_struct.real_parent", profile.TaskRealParent),
        })
        {
            if (value < 0)
            {
                missing.Add(name);
            }
        }
        if (missing.Count > 0)
        {
            throw new KernelNotFoundException($"the type information ({types.Source}) lacks {string.Join(", ", missing)}; supply the kernel's ISF with --isf");
        }
        return profile;
    }
}
