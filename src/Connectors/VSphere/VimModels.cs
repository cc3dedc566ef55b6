namespace CloudMem.Connectors.VSphere;

/// <summary>A vSphere managed object reference (type and id, e.g. VirtualMachine vm-42).</summary>
public sealed record MoRef(string Type, string Value)
{
    /// <inheritdoc />
    public override string ToString() => $"{Type}:{Value}";
}

/// <summary>State of a vSphere task (TaskInfoState).</summary>
public enum VimTaskState
{
    /// <summary>Waiting to run.</summary>
    Queued,
    /// <summary>Running.</summary>
    Running,
    /// <summary>Finished successfully.</summary>
    Success,
    /// <summary>Finished with an error.</summary>
    Error,
}

/// <summary>What we read of a task's info: state, progress, the result reference and the error message.</summary>
public sealed record VimTaskInfo(VimTaskState State, int? Progress, MoRef? Result, string? Error)
{
    /// <summary>Parses a TaskInfoState name (any case).</summary>
    public static VimTaskState ParseState(string? text) => text?.ToLowerInvariant() switch
    {
        "queued" => VimTaskState.Queued,
        "running" => VimTaskState.Running,
        "success" => VimTaskState.Success,
        "error" => VimTaskState.Error,
        _ => throw new Core.CaptureException($"vSphere task state '{text}' is not queued, running, success or error"),
    };
}

/// <summary>One file of a VM's layoutEx (name "[datastore] dir/file", type such as snapshotData, size in bytes).</summary>
public sealed record LayoutFile(int Key, string Name, string Type, long Size);

/// <summary>One snapshot's entry of layoutEx: the snapshot, its data (.vmsn) file key and its memory (.vmem) key (-1: none).</summary>
public sealed record LayoutSnapshot(MoRef Snapshot, int DataKey, int MemoryKey);

/// <summary>A VM's layoutEx (the part we use).</summary>
public sealed record VmLayout(IReadOnlyList<LayoutFile> Files, IReadOnlyList<LayoutSnapshot> Snapshots);

/// <summary>What we read of a VM before a capture.</summary>
public sealed record VmSummary(MoRef Vm, string Name, string PowerState, string DatacenterName, int SnapshotCount);

/// <summary>A datastore path "[datastore] dir/file" split in its parts.</summary>
public sealed record DatastorePath(string Datastore, string Path)
{
    /// <summary>Parses "[ds] dir/file".</summary>
    /// <exception cref="Core.CaptureException">not of that form.</exception>
    public static DatastorePath Parse(string text)
    {
        int close = text.IndexOf(']', StringComparison.Ordinal);
        if (!text.StartsWith('[') || close < 2)
        {
            throw new Core.CaptureException($"'{text}' is not a datastore path '[datastore] dir/file'");
        }
        return new DatastorePath(text[1..close], text[(close + 1)..].Trim().TrimStart('/'));
    }

    /// <summary>The file name.</summary>
    public string FileName => System.IO.Path.GetFileName(Path);

    /// <summary>The same directory, another file name.</summary>
    public DatastorePath WithFileName(string fileName)
    {
        int slash = Path.LastIndexOf('/');
        return this with { Path = slash < 0 ? fileName : Path[..(slash + 1)] + fileName };
    }

    /// <inheritdoc />
    public override string ToString() => $"[{Datastore}] {Path}";
}

/// <summary>A snapshot of a VM and its name.</summary>
public sealed record SnapshotRef(MoRef Snapshot, string Name);
