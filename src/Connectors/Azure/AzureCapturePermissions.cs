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
/// Isolation (NICs, NSGs) and hibernation (deallocate, snapshots) are not granted: they stay manual.
/// </summary>
public static class AzureCapturePermissions
{
    private const string Vm = "/subscriptions/[^/]+/resourceGroups/[^/]+/providers/Microsoft\\.Compute/virtualMachines/[^/]+";
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

    /// <summary>The distinct actions of <paramref name="kind"/>, sorted.</summary>
    public static IReadOnlyList<string> Actions(AzurePermissionKind kind)
        => [.. Capture.Where(p => p.Kind == kind).Select(p => p.Action).Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)];

    /// <summary>The entry covering a request, or null.</summary>
    public static AzurePermission? For(string service, string method, string path) => Capture.FirstOrDefault(p => p.Matches(service, method, path));
}
