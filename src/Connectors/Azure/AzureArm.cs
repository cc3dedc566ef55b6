using System.Text.Json;
using System.Text.Json.Nodes;
using Azure;
using Azure.Core;
using Azure.Core.Pipeline;
using Azure.ResourceManager;
using Azure.ResourceManager.Compute;
using Azure.ResourceManager.Compute.Models;
using Azure.ResourceManager.Models;
using Azure.ResourceManager.Resources;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Azure;

/// <summary>What the preflight learned about a VM (GET VM + GET instanceView).</summary>
internal sealed record AzureVmFacts(
    string Id,
    string Name,
    string Location,
    string? VmUniqueId,
    string? OsType,
    string? OsName,
    string? PowerState,
    string? AgentStatus,
    string? AgentVersion,
    bool HibernationEnabled,
    string? OsDiskId,
    IReadOnlyList<string> NicIds,
    IReadOnlyList<AzureDataDisk> DataDisks);

/// <summary>A managed data disk attached to a VM (LUN, name, ARM id).</summary>
internal sealed record AzureDataDisk(int Lun, string Name, string Id);

/// <summary>Where the ARM endpoint is and how to reach it (public cloud by default; tests point it at a local server).</summary>
/// <param name="Endpoint">ARM base URL, e.g. https://management.azure.com.</param>
/// <param name="Audience">Token audience (scope without /.default).</param>
/// <param name="Transport">A transport to use instead of the default (tests: one that trusts only their certificate).</param>
internal sealed record AzureArmSettings(Uri? Endpoint = null, string? Audience = null, HttpPipelineTransport? Transport = null);

/// <summary>
/// The ARM calls of the connector, through the real Azure SDK (Azure.ResourceManager.Compute 1.2.0; network
/// resources through GenericResource because no Network SDK package is available here). The SDK keeps its own
/// retries; every response's request ids are recorded by <see cref="Log"/>. Long-running operations are started
/// with <see cref="WaitUntil.Started"/> and polled by the caller under its own timeout.
/// </summary>
internal sealed partial class AzureArm
{
    /// <summary>API version used for NICs and NSGs (GenericResource needs one; fixed so no provider lookup happens).</summary>
    public const string NetworkApiVersion = "2023-09-01";

    private static readonly ResourceType s_nic = new("Microsoft.Network/networkInterfaces");
    private static readonly ResourceType s_nsg = new("Microsoft.Network/networkSecurityGroups");

    private readonly ArmClient _client;

    public AzureArm(TokenCredential credential, string subscriptionId, AzureArmSettings settings)
    {
        Log = new AzureRequestLog("arm");
        var options = new ArmClientOptions();
        if (settings.Endpoint is not null)
        {
            options.Environment = new ArmEnvironment(settings.Endpoint, settings.Audience ?? settings.Endpoint.GetLeftPart(UriPartial.Authority));
        }
        if (settings.Transport is not null)
        {
            options.Transport = settings.Transport;
        }
        options.SetApiVersion(s_nic, NetworkApiVersion);
        options.SetApiVersion(s_nsg, NetworkApiVersion);
        options.AddPolicy(Log, HttpPipelinePosition.PerRetry);
        _client = new ArmClient(credential, subscriptionId, options);
    }

    /// <summary>Request ids of every ARM response.</summary>
    public AzureRequestLog Log { get; }

    private VirtualMachineResource Vm(ResourceIdentifier vmId) => _client.GetVirtualMachineResource(vmId);

    /// <summary>GET VM and GET instanceView (read-only).</summary>
    public async Task<AzureVmFacts> DescribeAsync(ResourceIdentifier vmId, CancellationToken cancellationToken)
    {
        VirtualMachineResource vm = (await Vm(vmId).GetAsync(cancellationToken: cancellationToken).ConfigureAwait(false)).Value;
        VirtualMachineInstanceView view = (await vm.InstanceViewAsync(cancellationToken).ConfigureAwait(false)).Value;
        VirtualMachineData data = vm.Data;
        string? power = view.Statuses?.Select(s => s.Code).FirstOrDefault(c => c?.StartsWith("PowerState/", StringComparison.OrdinalIgnoreCase) == true);
        InstanceViewStatus? agent = view.VmAgent?.Statuses?.FirstOrDefault();
        return new AzureVmFacts(
            data.Id.ToString(),
            data.Name,
            data.Location.Name,
            data.VmId,
            data.StorageProfile?.OSDisk?.OSType?.ToString(),
            view.OSName,
            power?["PowerState/".Length..],
            agent?.DisplayStatus,
            view.VmAgent?.VmAgentVersion,
            data.AdditionalCapabilities?.HibernationEnabled == true,
            data.StorageProfile?.OSDisk?.ManagedDisk?.Id?.ToString(),
            data.NetworkProfile?.NetworkInterfaces?.Where(n => n.Id is not null).Select(n => n.Id!.ToString()).ToArray() ?? [],
            data.StorageProfile?.DataDisks?.Where(d => d.ManagedDisk?.Id is not null)
                .Select(d => new AzureDataDisk(d.Lun, d.Name ?? d.ManagedDisk!.Id!.Name, d.ManagedDisk!.Id!.ToString())).ToArray() ?? []);
    }

    /// <summary>
    /// PUT virtualMachines/{vm}/runCommands/{name} (managed Run Command, v2): our script as its source, the SAS URLs as
    /// protectedParameters only, asyncExecution (the PUT completes once the script starts; we poll the instance view)
    /// and timeoutInSeconds (Azure stops the script then). Waits only until ARM accepted the resource.
    /// </summary>
    public async Task StartManagedRunCommandAsync(ResourceIdentifier vmId, string name, string location, string script,
        IReadOnlyDictionary<string, string> protectedParameters, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var data = new VirtualMachineRunCommandData(new AzureLocation(location))
        {
            Source = new VirtualMachineRunCommandScriptSource { Script = script },
            AsyncExecution = true,
            TimeoutInSeconds = checked((int)Math.Ceiling(timeout.TotalSeconds)),
        };
        foreach ((string key, string value) in protectedParameters)
        {
            data.ProtectedParameters.Add(new RunCommandInputParameter(key, value));
        }
        await Vm(vmId).GetVirtualMachineRunCommands().CreateOrUpdateAsync(WaitUntil.Started, name, data, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>GET runCommands/{name}?$expand=instanceView; null when the run command does not exist (an instance view may be absent right after the PUT).</summary>
    public async Task<(bool Exists, VirtualMachineRunCommandInstanceView? View)> GetManagedRunCommandAsync(ResourceIdentifier vmId, string name, CancellationToken cancellationToken)
    {
        try
        {
            Response<VirtualMachineRunCommandResource> found = await Vm(vmId).GetVirtualMachineRunCommandAsync(name, "instanceView", cancellationToken).ConfigureAwait(false);
            return (true, found.Value.Data.InstanceView);
        }
        catch (RequestFailedException e) when (e.Status == 404)
        {
            return (false, null);
        }
    }

    /// <summary>DELETE runCommands/{name} (started; Azure removes the extension state and its stored protected parameters).</summary>
    public async Task DeleteManagedRunCommandAsync(ResourceIdentifier vmId, string name, CancellationToken cancellationToken)
    {
        VirtualMachineRunCommandResource command = _client.GetVirtualMachineRunCommandResource(
            VirtualMachineRunCommandResource.CreateResourceIdentifier(vmId.SubscriptionId!, vmId.ResourceGroupName!, vmId.Name, name));
        await command.DeleteAsync(WaitUntil.Started, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>POST deallocate?hibernate=true; returns the started operation.</summary>
    public async Task<ArmOperation> StartHibernateAsync(ResourceIdentifier vmId, CancellationToken cancellationToken)
        => await Vm(vmId).DeallocateAsync(WaitUntil.Started, hibernate: true, cancellationToken).ConfigureAwait(false);

    /// <summary>PUT a full-copy snapshot of a managed disk in the VM's resource group; returns the started operation.</summary>
    public Task<ArmOperation<SnapshotResource>> StartSnapshotAsync(
        ResourceIdentifier vmId, string snapshotName, string diskId, string location, IReadOnlyDictionary<string, string> tags,
        CancellationToken cancellationToken)
        => StartSnapshotAsync(
            SnapshotResource.CreateResourceIdentifier(vmId.SubscriptionId!, vmId.ResourceGroupName!, snapshotName),
            new AzureSnapshotSource(diskId, DiskCreateOption.Copy, Incremental: false), location, tags, cancellationToken);

    /// <summary>The NSG id attached to a NIC (null when none).</summary>
    public async Task<string?> GetNicNsgAsync(string nicId, CancellationToken cancellationToken)
    {
        GenericResource nic = (await _client.GetGenericResource(new ResourceIdentifier(nicId)).GetAsync(cancellationToken).ConfigureAwait(false)).Value;
        return NsgOf(nic.Data);
    }

    /// <summary>GET NSG (read-only check that it exists and is readable).</summary>
    public async Task<string> GetNsgLocationAsync(string nsgId, CancellationToken cancellationToken)
    {
        GenericResource nsg = (await _client.GetGenericResource(new ResourceIdentifier(nsgId)).GetAsync(cancellationToken).ConfigureAwait(false)).Value;
        return nsg.Data.Location.Name;
    }

    /// <summary>GET the NIC, set properties.networkSecurityGroup, PUT it back; returns the NSG id it had before.</summary>
    public async Task<string?> SetNicNsgAsync(string nicId, string nsgId, CancellationToken cancellationToken)
    {
        string? previous = null;
        GenericResourceData after = await UpdateAsync(nicId, properties =>
        {
            previous = properties["networkSecurityGroup"]?["id"]?.GetValue<string>();
            properties["networkSecurityGroup"] = new JsonObject { ["id"] = nsgId };
            return true;
        }, cancellationToken).ConfigureAwait(false);
        string? now = NsgOf(after);
        if (!string.Equals(now, nsgId, StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidOperationException($"NIC {nicId} reports NSG '{now ?? "none"}' after the update, not {nsgId}");
        }
        return previous;
    }

    /// <summary>
    /// Sets properties.flushConnection = true on an NSG (Azure then re-evaluates the flows it already allowed when its
    /// rules change or it is attached, instead of letting established connections live on); false when it already was.
    /// </summary>
    public async Task<bool> EnableFlushConnectionAsync(string nsgId, CancellationToken cancellationToken)
    {
        bool changed = false;
        GenericResourceData after = await UpdateAsync(nsgId, properties =>
        {
            changed = properties["flushConnection"]?.GetValue<bool>() != true;
            properties["flushConnection"] = true;
            return changed;
        }, cancellationToken).ConfigureAwait(false);
        JsonNode? now = after.Properties is null ? null : JsonNode.Parse(after.Properties.ToString())?["flushConnection"];
        if (now?.GetValue<bool>() != true)
        {
            throw new InvalidOperationException($"NSG {nsgId} does not report flushConnection = true after the update");
        }
        return changed;
    }

    /// <summary>Removes the public IP address from every IP configuration of a NIC; returns (ipConfiguration, public IP id) removed.</summary>
    public async Task<IReadOnlyList<(string IpConfiguration, string PublicIp)>> RemoveNicPublicIpsAsync(string nicId, CancellationToken cancellationToken)
    {
        var removed = new List<(string, string)>();
        await UpdateAsync(nicId, properties =>
        {
            foreach (JsonNode? config in properties["ipConfigurations"]?.AsArray() ?? [])
            {
                if (config?["properties"]?.AsObject() is { } ipProperties && ipProperties["publicIPAddress"]?["id"]?.GetValue<string>() is { } publicIp)
                {
                    removed.Add((config["name"]?.GetValue<string>() ?? "?", publicIp));
                    ipProperties.Remove("publicIPAddress");
                }
            }
            return removed.Count > 0;
        }, cancellationToken).ConfigureAwait(false);
        return removed;
    }

    /// <summary>PATCH the VM with identity type None (system- and user-assigned identities removed); returns what it had.</summary>
    public async Task<string?> RemoveVmIdentityAsync(ResourceIdentifier vmId, CancellationToken cancellationToken)
    {
        VirtualMachineResource vm = (await Vm(vmId).GetAsync(cancellationToken: cancellationToken).ConfigureAwait(false)).Value;
        if (vm.Data.Identity is not { } identity || identity.ManagedServiceIdentityType == ManagedServiceIdentityType.None)
        {
            return null;
        }
        string before = $"{identity.ManagedServiceIdentityType}{(identity.PrincipalId is { } p ? $" (principal {p})" : "")}"
            + (identity.UserAssignedIdentities.Count > 0 ? "; user-assigned: " + string.Join(", ", identity.UserAssignedIdentities.Keys) : "");
        await vm.UpdateAsync(WaitUntil.Completed, new VirtualMachinePatch { Identity = new ManagedServiceIdentity(ManagedServiceIdentityType.None) }, cancellationToken: cancellationToken).ConfigureAwait(false);
        return before;
    }

    /// <summary>
    /// GET a network resource, let <paramref name="change"/> edit its properties (returning false: nothing to write),
    /// drop the read-only members and PUT it back (network resources' PATCH only changes tags). Returns the resource as
    /// ARM answered.
    /// </summary>
    private async Task<GenericResourceData> UpdateAsync(string id, Func<JsonObject, bool> change, CancellationToken cancellationToken)
    {
        GenericResource resource = (await _client.GetGenericResource(new ResourceIdentifier(id)).GetAsync(cancellationToken).ConfigureAwait(false)).Value;
        JsonObject properties = resource.Data.Properties is null
            ? new JsonObject()
            : JsonNode.Parse(resource.Data.Properties.ToString())?.AsObject() ?? new JsonObject();
        if (!change(properties))
        {
            return resource.Data;
        }
        properties.Remove("provisioningState");
        properties.Remove("resourceGuid");
        var update = new GenericResourceData(resource.Data.Location)
        {
            Properties = BinaryData.FromString(properties.ToJsonString()),
            Kind = resource.Data.Kind,
        };
        foreach ((string key, string value) in resource.Data.Tags)
        {
            update.Tags[key] = value;
        }
        ArmOperation<GenericResource> operation = await _client.GetGenericResources()
            .CreateOrUpdateAsync(WaitUntil.Completed, resource.Id, update, cancellationToken).ConfigureAwait(false);
        return operation.Value.Data;
    }

    private static string? NsgOf(GenericResourceData data)
    {
        if (data.Properties is null)
        {
            return null;
        }
        JsonNode? properties = JsonNode.Parse(data.Properties.ToString());
        return properties?["networkSecurityGroup"]?["id"]?.GetValue<string>();
    }
}
