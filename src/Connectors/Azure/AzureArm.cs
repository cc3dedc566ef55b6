using System.Text.Json;
using System.Text.Json.Nodes;
using Azure;
using Azure.Core;
using Azure.Core.Pipeline;
using Azure.ResourceManager;
using Azure.ResourceManager.Compute;
using Azure.ResourceManager.Compute.Models;
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
    IReadOnlyList<string> NicIds);

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
internal sealed class AzureArm
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
        _endpoint = settings.Endpoint ?? ArmEnvironment.AzurePublicCloud.Endpoint;
        string audience = (settings.Audience ?? settings.Endpoint?.GetLeftPart(UriPartial.Authority) ?? ArmEnvironment.AzurePublicCloud.Audience).TrimEnd('/');
        _pipeline = HttpPipelineBuilder.Build(options, new BearerTokenAuthenticationPolicy(credential, audience + "/.default"));
    }

    private readonly Uri _endpoint;
    private readonly HttpPipeline _pipeline;

    /// <summary>
    /// One GET of a long-running operation's Azure-AsyncOperation URL (saved by an earlier worker), and of its Location
    /// (<paramref name="result"/>) when it succeeded without the Run Command output in its body. Both must be on the ARM
    /// endpoint's host: the bearer token goes to no other host, whatever the saved state says.
    /// </summary>
    public async Task<AzureOperationStatus> GetOperationAsync(Uri operation, Uri? result, CancellationToken cancellationToken)
    {
        using JsonDocument status = await GetJsonAsync(operation, cancellationToken).ConfigureAwait(false);
        JsonElement root = status.RootElement;
        string state = root.TryGetProperty("status", out JsonElement s) && s.ValueKind == JsonValueKind.String ? s.GetString()! : "unknown";
        bool done = state is "Succeeded" or "Failed" or "Canceled";
        string? error = root.TryGetProperty("error", out JsonElement e) && e.ValueKind == JsonValueKind.Object && e.TryGetProperty("message", out JsonElement m) ? m.ToString() : null;
        if (!done || state != "Succeeded")
        {
            return new AzureOperationStatus(done, state, null, error);
        }
        if (root.TryGetProperty("properties", out JsonElement properties) && properties.ValueKind == JsonValueKind.Object
            && properties.TryGetProperty("output", out JsonElement output))
        {
            return new AzureOperationStatus(true, state, Messages(output), error);
        }
        if (result is null)
        {
            return new AzureOperationStatus(true, state, "", error);
        }
        using JsonDocument final = await GetJsonAsync(result, cancellationToken).ConfigureAwait(false);
        return new AzureOperationStatus(true, state, Messages(final.RootElement), error);
    }

    private static string Messages(JsonElement output)
        => output.ValueKind == JsonValueKind.Object && output.TryGetProperty("value", out JsonElement values) && values.ValueKind == JsonValueKind.Array
            ? string.Join("\n", values.EnumerateArray().Select(v => v.ValueKind == JsonValueKind.Object && v.TryGetProperty("message", out JsonElement m) ? m.ToString() : ""))
            : "";

    private async Task<JsonDocument> GetJsonAsync(Uri url, CancellationToken cancellationToken)
    {
        if (!string.Equals(url.Host, _endpoint.Host, StringComparison.OrdinalIgnoreCase) || url.Port != _endpoint.Port || url.Scheme != _endpoint.Scheme)
        {
            throw new CaptureException($"operation URL {url.GetLeftPart(UriPartial.Path)} is not on the ARM endpoint {_endpoint.GetLeftPart(UriPartial.Authority)}: not followed");
        }
        using HttpMessage message = _pipeline.CreateMessage();
        message.Request.Method = RequestMethod.Get;
        message.Request.Uri.Reset(url);
        await _pipeline.SendAsync(message, cancellationToken).ConfigureAwait(false);
        Response response = message.Response;
        if (response.Status is < 200 or > 299)
        {
            throw new CaptureException($"GET {url.AbsolutePath} answered HTTP {response.Status}: {AzureCaptureConnector.Describe(new RequestFailedException(response))}");
        }
        try
        {
            return JsonDocument.Parse(response.Content.ToMemory());
        }
        catch (JsonException ex)
        {
            throw new CaptureException($"GET {url.AbsolutePath}: the body is not JSON ({CaptureException.OneLine(ex.Message)})", ex);
        }
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
            data.NetworkProfile?.NetworkInterfaces?.Where(n => n.Id is not null).Select(n => n.Id!.ToString()).ToArray() ?? []);
    }

    /// <summary>POST runCommand; returns the started long-running operation.</summary>
    public async Task<ArmOperation<VirtualMachineRunCommandResult>> StartRunCommandAsync(
        ResourceIdentifier vmId, string commandId, IReadOnlyList<string> script, CancellationToken cancellationToken)
    {
        var input = new RunCommandInput(commandId);
        foreach (string line in script)
        {
            input.Script.Add(line);
        }
        return await Vm(vmId).RunCommandAsync(WaitUntil.Started, input, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>POST deallocate?hibernate=true; returns the started operation.</summary>
    public async Task<ArmOperation> StartHibernateAsync(ResourceIdentifier vmId, CancellationToken cancellationToken)
        => await Vm(vmId).DeallocateAsync(WaitUntil.Started, hibernate: true, cancellationToken).ConfigureAwait(false);

    /// <summary>PUT a full-copy snapshot of a managed disk in the VM's resource group; returns the started operation.</summary>
    public async Task<ArmOperation<SnapshotResource>> StartSnapshotAsync(
        ResourceIdentifier vmId, string snapshotName, string diskId, string location, IReadOnlyDictionary<string, string> tags,
        CancellationToken cancellationToken)
    {
        ResourceGroupResource group = _client.GetResourceGroupResource(
            ResourceGroupResource.CreateResourceIdentifier(vmId.SubscriptionId!, vmId.ResourceGroupName!));
        var data = new SnapshotData(new AzureLocation(location))
        {
            CreationData = new DiskCreationData(DiskCreateOption.Copy) { SourceResourceId = new ResourceIdentifier(diskId) },
            Incremental = false,
        };
        foreach ((string key, string value) in tags)
        {
            data.Tags[key] = value;
        }
        return await group.GetSnapshots().CreateOrUpdateAsync(WaitUntil.Started, snapshotName, data, cancellationToken).ConfigureAwait(false);
    }

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
        GenericResource nic = (await _client.GetGenericResource(new ResourceIdentifier(nicId)).GetAsync(cancellationToken).ConfigureAwait(false)).Value;
        string? previous = NsgOf(nic.Data);
        JsonObject properties = nic.Data.Properties is null
            ? new JsonObject()
            : JsonNode.Parse(nic.Data.Properties.ToString())?.AsObject() ?? new JsonObject();
        properties["networkSecurityGroup"] = new JsonObject { ["id"] = nsgId };
        // Read-only members must not be sent back.
        properties.Remove("provisioningState");
        properties.Remove("resourceGuid");
        var update = new GenericResourceData(nic.Data.Location)
        {
            Properties = BinaryData.FromString(properties.ToJsonString()),
            Kind = nic.Data.Kind,
        };
        foreach ((string key, string value) in nic.Data.Tags)
        {
            update.Tags[key] = value;
        }
        // PUT (networkInterfaces PATCH only changes tags).
        ArmOperation<GenericResource> operation = await _client.GetGenericResources()
            .CreateOrUpdateAsync(WaitUntil.Completed, nic.Id, update, cancellationToken).ConfigureAwait(false);
        string? now = NsgOf(operation.Value.Data);
        if (!string.Equals(now, nsgId, StringComparison.OrdinalIgnoreCase))
        {
            throw new InvalidOperationException($"NIC {nicId} reports NSG '{now ?? "none"}' after the update, not {nsgId}");
        }
        return previous;
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
