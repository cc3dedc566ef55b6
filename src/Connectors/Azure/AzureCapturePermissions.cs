using System.Text.RegularExpressions;

namespace CloudMem.Connectors.Azure;

/// <summary>Which Azure RBAC list an action belongs to.</summary>
public enum AzurePermissionKind
{
    /// <summary>A control-plane action (Microsoft.Authorization roleDefinitions <c>actions</c>).</summary>
    Action,
    /// <summary>A data-plane action (<c>dataActions</c>): Blob reads and writes.</summary>
    DataAction,
}

/// <summary>
/// One request the Azure Run Command capture sends (service "arm" or "blob" as the request log names it, method, and a
/// pattern of the URL path: ARM paths from the subscription, Blob paths from the container, as on Azure where the
/// account is the host) and the RBAC action that allows it.
/// </summary>
public sealed record AzurePermission(string Service, string Method, string PathPattern, string Action, AzurePermissionKind Kind, string Why)
{
    /// <summary>Whether this entry covers a request (service, method and path without query).</summary>
    public bool Matches(string service, string method, string path)
        => string.Equals(service, Service, StringComparison.Ordinal)
            && string.Equals(method, Method, StringComparison.OrdinalIgnoreCase)
            && Regex.IsMatch(path, "^" + PathPattern + "$", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant, TimeSpan.FromSeconds(1));
}

/// <summary>
/// The table behind infra/azure/cloudmem-responder.bicep's two custom roles (the capture role on the resource group,
/// the evidence role on the container): every ARM and Blob request the Run Command capture and the durable workflow
/// send, with the one action that allows it. Tests check that every request a whole capture sent matches an entry,
/// and that the Bicep roles grant exactly these actions and data actions, nothing more (no VM Contributor, no delete).
/// The durable workflow's disk snapshots (<see cref="DiskSnapshots"/>) are granted by the same capture role; the
/// hibernation method (<see cref="Hibernation"/>) has a role of its own, defined but assigned to no one (the operator
/// assigns it to whoever runs <c>capture azure --method hibernate</c>); isolation (NICs, NSGs) stays manual.
/// </summary>
public static class AzureCapturePermissions
{
    private const string Vm = "/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.Compute/virtualMachines/[^/]+";
    private const string Snapshot = "/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.Compute/snapshots/[^/]+";
    private const string Operation = "/subscriptions/[^/]+/providers/Microsoft\\.Compute/locations/[^/]+/operations/[^/]+";
    private const string Container = "/[^/]+";
    private const string Blob = "/[^/]+/.+";

    /// <summary>The Run Command capture path.</summary>
    public static IReadOnlyList<AzurePermission> Capture { get; } =
    [
        new("arm", "GET", Vm, "Microsoft.Compute/virtualMachines/read", AzurePermissionKind.Action, "preflight: OS, size, location"),
        new("arm", "GET", Vm + "/instanceView", "Microsoft.Compute/virtualMachines/instanceView/read", AzurePermissionKind.Action, "preflight: power state, VM agent"),
        new("arm", "PUT", Vm + "/runCommands/[^/]+", "Microsoft.Compute/virtualMachines/runCommands/write", AzurePermissionKind.Action, "AVML/WinPmem through a managed run command (SAS in protectedParameters)"),
        new("arm", "GET", Vm + "/runCommands/[^/]+", "Microsoft.Compute/virtualMachines/runCommands/read", AzurePermissionKind.Action, "poll the run command's instance view; a resumed worker finds it"),
        new("arm", "DELETE", Vm + "/runCommands/[^/]+", "Microsoft.Compute/virtualMachines/runCommands/delete", AzurePermissionKind.Action, "remove the run command (and its stored protected parameters) once over"),
        new("blob", "GET", Container, "Microsoft.Storage/storageAccounts/blobServices/containers/read", AzurePermissionKind.Action, "preflight: the evidence container exists"),
        new("blob", "POST", "/?", "Microsoft.Storage/storageAccounts/blobServices/generateUserDelegationKey/action", AzurePermissionKind.Action, "user delegation key for the one-blob SAS"),
        new("blob", "PUT", Blob, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/write", AzurePermissionKind.DataAction, "stage the tool, upload the manifest (create-only); the guest's Put Block/Put Block List go through the SAS"),
        new("blob", "GET", Blob, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", AzurePermissionKind.DataAction, "read back and hash the evidence, check a staged tool"),
        new("blob", "HEAD", Blob, "Microsoft.Storage/storageAccounts/blobServices/containers/blobs/read", AzurePermissionKind.DataAction, "evidence properties (size, ETag, version, MD5)"),
    ];

    /// <summary>
    /// The durable workflow's snapshots step (ARM only; granted by the capture role): the VM read again for its disks,
    /// snapshots created and read (reused on a retry), their operations polled. A snapshot of a disk also needs read
    /// access to the disk (<c>disks/read</c>, checked by ARM on the source, not a request of ours). A forensic copy
    /// needs <c>snapshots/write</c> in the forensic resource group, granted there (not by this template).
    /// </summary>
    public static IReadOnlyList<AzurePermission> DiskSnapshots { get; } =
    [
        new("arm", "GET", Vm, "Microsoft.Compute/virtualMachines/read", AzurePermissionKind.Action, "the VM's OS and data disks"),
        new("arm", "GET", Vm + "/instanceView", "Microsoft.Compute/virtualMachines/instanceView/read", AzurePermissionKind.Action, "read with the VM (location, state)"),
        new("arm", "PUT", Snapshot, "Microsoft.Compute/snapshots/write", AzurePermissionKind.Action, "incremental snapshot of each disk (and the copy, in the forensic resource group)"),
        new("arm", "GET", Snapshot, "Microsoft.Compute/snapshots/read", AzurePermissionKind.Action, "a retried step finds the snapshot an earlier attempt made; provisioning state"),
        new("arm", "GET", Operation, "Microsoft.Compute/locations/operations/read", AzurePermissionKind.Action, "poll the snapshot's Azure-AsyncOperation"),
        new("arm", "GET", "/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.Compute/disks/[^/]+", "Microsoft.Compute/disks/read", AzurePermissionKind.Action, "read access to the source disk (checked by ARM when the snapshot is created)"),
    ];

    /// <summary>The hibernation method (<c>capture azure --method hibernate</c>, ARM only; its own role).</summary>
    public static IReadOnlyList<AzurePermission> Hibernation { get; } =
    [
        new("arm", "GET", Vm, "Microsoft.Compute/virtualMachines/read", AzurePermissionKind.Action, "preflight: hibernation enabled, OS disk"),
        new("arm", "GET", Vm + "/instanceView", "Microsoft.Compute/virtualMachines/instanceView/read", AzurePermissionKind.Action, "preflight and after: power state"),
        new("arm", "POST", Vm + "/deallocate", "Microsoft.Compute/virtualMachines/deallocate/action", AzurePermissionKind.Action, "deallocate with hibernate=true"),
        new("arm", "PUT", Snapshot, "Microsoft.Compute/snapshots/write", AzurePermissionKind.Action, "full snapshot of the OS disk"),
        new("arm", "GET", Snapshot, "Microsoft.Compute/snapshots/read", AzurePermissionKind.Action, "snapshot provisioning state"),
        new("arm", "POST", Snapshot + "/beginGetAccess", "Microsoft.Compute/snapshots/beginGetAccess/action", AzurePermissionKind.Action, "read SAS on the snapshot's VHD"),
        new("arm", "POST", Snapshot + "/endGetAccess", "Microsoft.Compute/snapshots/endGetAccess/action", AzurePermissionKind.Action, "revoke the read SAS"),
        new("arm", "GET", Operation, "Microsoft.Compute/locations/operations/read", AzurePermissionKind.Action, "poll deallocate, snapshot and access operations"),
        new("arm", "GET", "/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.Compute/disks/[^/]+", "Microsoft.Compute/disks/read", AzurePermissionKind.Action, "read access to the OS disk (checked by ARM when the snapshot is created)"),
    ];

    /// <summary>The distinct actions of <paramref name="kind"/> in <paramref name="tables"/> (default: <see cref="Capture"/>), sorted.</summary>
    public static IReadOnlyList<string> Actions(AzurePermissionKind kind, params IReadOnlyList<AzurePermission>[] tables)
        => [.. (tables.Length == 0 ? [Capture] : tables).SelectMany(t => t).Where(p => p.Kind == kind).Select(p => p.Action).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];

    /// <summary>The entry of <paramref name="table"/> (default: <see cref="Capture"/>) covering a request, or null.</summary>
    public static AzurePermission? For(string service, string method, string path, IReadOnlyList<AzurePermission>? table = null)
        => (table ?? Capture).FirstOrDefault(p => p.Matches(service, method, path));
}
