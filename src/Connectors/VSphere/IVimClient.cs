namespace CloudMem.Connectors.VSphere;

/// <summary>
/// The vSphere calls a memory capture makes, whatever the wire protocol: VI/JSON (<see cref="VimJsonClient"/>, vCenter
/// 8.0U1+) or SOAP (<see cref="VimSoapClient"/>, ESXi and older vCenter). Every method takes a cancellation token and
/// throws <see cref="Core.CaptureException"/> (one line, with the fault) when the server refuses.
/// </summary>
/// <remarks>Not thread-safe: one capture uses one client.</remarks>
public interface IVimClient : IAsyncDisposable
{
    /// <summary>"vi-json" or "soap".</summary>
    string Transport { get; }

    /// <summary>Product and version from the service content (e.g. "VMware vCenter Server 8.0.2 build-...").</summary>
    string? ServerDescription { get; }

    /// <summary>
    /// The session key after <see cref="LoginAsync"/>, for the datastore /folder downloads (sent as the
    /// vmware_soap_session cookie and the vmware-api-session-id header). Never logged.
    /// </summary>
    string? SessionKey { get; }

    /// <summary>Reads the service content (no authentication needed).</summary>
    Task ConnectAsync(CancellationToken cancellationToken);

    /// <summary>Logs in; returns the user name the server reports for the session.</summary>
    Task<string> LoginAsync(string userName, string password, CancellationToken cancellationToken);

    /// <summary>Logs out (best effort).</summary>
    Task LogoutAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Resolves a VM given as a moref (vm-42, or a bare number on ESXi), an inventory path ("DC/vm/folder/name") or a
    /// name (looked up under <paramref name="datacenter"/>'s vm folder; with no datacenter given, the only one).
    /// </summary>
    Task<MoRef> FindVmAsync(string vm, string? datacenter, CancellationToken cancellationToken);

    /// <summary>Name, power state, datacenter and snapshot count of a VM.</summary>
    Task<VmSummary> GetVmAsync(MoRef vm, CancellationToken cancellationToken);

    /// <summary>CreateSnapshot_Task; returns the task.</summary>
    Task<MoRef> CreateSnapshotAsync(MoRef vm, string name, string description, bool memory, bool quiesce, CancellationToken cancellationToken);

    /// <summary>RemoveSnapshot_Task (children kept, disks consolidated); returns the task.</summary>
    Task<MoRef> RemoveSnapshotAsync(MoRef snapshot, CancellationToken cancellationToken);

    /// <summary>The task's info (state, result, error).</summary>
    Task<VimTaskInfo> GetTaskInfoAsync(MoRef task, CancellationToken cancellationToken);

    /// <summary>The VM's layoutEx (files and snapshot entries).</summary>
    Task<VmLayout> GetLayoutAsync(MoRef vm, CancellationToken cancellationToken);

    /// <summary>Every snapshot of the VM (the whole tree, flattened) with its name.</summary>
    Task<IReadOnlyList<SnapshotRef>> ListSnapshotsAsync(MoRef vm, CancellationToken cancellationToken);
}
