using Azure.Core;
using Azure.Storage;
using Azure.Storage.Blobs;

namespace CloudMem.Connectors.Azure;

/// <summary>How an Azure capture is done.</summary>
public enum AzureCaptureMethod
{
    /// <summary>Run Command runs AVML / WinPmem in the guest, which uploads to the evidence container.</summary>
    RunCommand,
    /// <summary>Opt-in: deallocate with hibernate=true, then a full snapshot of the OS disk (holds the hibernation file).</summary>
    Hibernate,
}

/// <summary>Options of an Azure capture (the provider-neutral part is <see cref="Core.CaptureRequest"/>).</summary>
internal sealed record AzureCaptureOptions
{
    /// <summary>The VM's full ARM id.</summary>
    public required ResourceIdentifier VmId { get; init; }

    /// <summary>The evidence container (https://ACCOUNT.blob.core.windows.net/CONTAINER).</summary>
    public required Uri ContainerUrl { get; init; }

    /// <summary>ARM credential (DefaultAzureCredential in the CLI). Also signs the user delegation key unless
    /// <see cref="StorageKey"/> is set.</summary>
    public required TokenCredential Credential { get; init; }

    /// <summary>An account key for the storage account (emulators, accounts without Entra ID data access): the SAS is
    /// then a service SAS signed with it. Null (the default) = user delegation SAS.</summary>
    public StorageSharedKeyCredential? StorageKey { get; init; }

    /// <summary>ARM endpoint and transport.</summary>
    public AzureArmSettings Arm { get; init; } = new();

    /// <summary>Blob client options (transport, retries); a request-id policy is added to them.</summary>
    public BlobClientOptions? BlobOptions { get; init; }

    /// <summary>The tool; null = from the VM's OS type (Linux: AVML, Windows: WinPmem).</summary>
    public AzureGuestTool? Tool { get; init; }

    /// <summary>Local file of the tool to stage in the container (needed for a capture, optional for a plan).</summary>
    public string? ToolFile { get; init; }

    /// <summary>Version of the tool, as recorded in the manifest (optional).</summary>
    public string? ToolVersion { get; init; }

    /// <summary>Run Command or the hibernate + snapshot path.</summary>
    public AzureCaptureMethod Method { get; init; } = AzureCaptureMethod.RunCommand;

    /// <summary>
    /// How long after the run command's timeoutInSeconds (the capture's command timeout) we keep polling its instance
    /// view: Azure stops the script at its timeout and then needs a moment to report TimedOut.
    /// </summary>
    public TimeSpan StatusMargin { get; init; } = TimeSpan.FromMinutes(3);
}
