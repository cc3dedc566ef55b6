using Azure;
using Azure.Core;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Azure;

/// <summary>What isolation removes besides swapping the NSG (both opt-in: they change what a restore must put back).</summary>
/// <param name="RemovePublicIps">Detach the public IP address from every IP configuration of every NIC (recorded for restore).</param>
/// <param name="RemoveManagedIdentity">Remove the VM's managed identities (identity type None), so a token stolen
/// through the instance metadata service stops being renewable.</param>
internal sealed record AzureIsolationExtras(bool RemovePublicIps = false, bool RemoveManagedIdentity = false);

/// <summary>
/// Network isolation of a VM: enable flushConnection on the isolation network security group (so Azure re-evaluates
/// the flows it had already allowed instead of letting established connections live on), attach it to every NIC,
/// recording the NSG each NIC had before (so it can be restored), optionally detach public IPs and remove the managed
/// identity, and record every step and request id in a custody manifest.
/// </summary>
internal sealed class AzureIsolator
{
    private readonly ResourceIdentifier _vmId;
    private readonly ResourceIdentifier _nsgId;
    private readonly CaptureRequest _request;
    private readonly CaptureLog _log;
    private readonly AzureArm _arm;
    private readonly AzureIsolationExtras _extras;

    public AzureIsolator(ResourceIdentifier vmId, ResourceIdentifier nsgId, TokenCredential credential, AzureArmSettings arm,
        CaptureRequest request, CaptureLog log, AzureIsolationExtras? extras = null)
    {
        _extras = extras ?? new AzureIsolationExtras();
        _vmId = vmId;
        _nsgId = nsgId;
        _request = request;
        _log = log;
        _arm = new AzureArm(credential, vmId.SubscriptionId!, arm);
    }

    /// <summary>Read-only checks (VM, NSG, NICs and their current NSGs) and the steps.</summary>
    public async Task<CapturePlan> PlanAsync(CancellationToken cancellationToken)
        => (await PreflightAsync(cancellationToken).ConfigureAwait(false)).Plan;

    private async Task<(CapturePlan Plan, IReadOnlyList<(string Nic, string? Nsg)> Nics)> PreflightAsync(CancellationToken cancellationToken)
    {
        var plan = new CapturePlan("azure", _vmId.ToString(), "isolate-nsg");
        var nics = new List<(string, string?)>();
        AzureVmFacts? facts = null;
        try
        {
            facts = await _arm.DescribeAsync(_vmId, cancellationToken).ConfigureAwait(false);
            plan.Check("vm readable", true, $"{facts.Name} in {facts.Location}, {facts.NicIds.Count} NIC(s)");
        }
        catch (RequestFailedException e)
        {
            plan.Check("vm readable", false, AzureCaptureConnector.Describe(e));
        }
        try
        {
            string location = await _arm.GetNsgLocationAsync(_nsgId.ToString(), cancellationToken).ConfigureAwait(false);
            plan.Check("isolation nsg", facts is null || string.Equals(location, facts.Location, StringComparison.OrdinalIgnoreCase),
                $"{_nsgId.Name} in {location}{(facts is not null && !string.Equals(location, facts.Location, StringComparison.OrdinalIgnoreCase) ? $" (the VM is in {facts.Location}: an NSG must be in the NIC's region)" : "")}");
        }
        catch (RequestFailedException e)
        {
            plan.Check("isolation nsg", false, AzureCaptureConnector.Describe(e));
        }
        if (facts is not null)
        {
            plan.Check("nics", facts.NicIds.Count > 0, facts.NicIds.Count > 0 ? string.Join(", ", facts.NicIds.Select(n => n[(n.LastIndexOf('/') + 1)..])) : "the VM has no NIC");
            foreach (string nic in facts.NicIds)
            {
                try
                {
                    string? current = await _arm.GetNicNsgAsync(nic, cancellationToken).ConfigureAwait(false);
                    nics.Add((nic, current));
                    plan.Step("attach nsg", $"{nic}: {current ?? "no NSG"} -> {_nsgId}");
                }
                catch (RequestFailedException e)
                {
                    plan.Check($"nic {nic}", false, AzureCaptureConnector.Describe(e));
                }
            }
        }
        plan.Step("flush connections", $"set flushConnection = true on {_nsgId.Name} (established flows are re-evaluated against its rules)");
        if (_extras.RemovePublicIps)
        {
            plan.Step("remove public ips", "detach the public IP of every NIC IP configuration (recorded for restore)");
        }
        if (_extras.RemoveManagedIdentity)
        {
            plan.Step("remove identity", $"PATCH {_vmId.Name} identity type None (system- and user-assigned identities removed; recorded)");
        }
        plan.Step("manifest", $"write the custody manifest (previous NSG of every NIC) in {_request.OutputDirectory}", mutating: false);
        plan.Notes.Add("NIC and subnet NSGs both apply: a deny-all NIC NSG cuts traffic the subnet allows. Azure platform traffic (168.63.129.16: VM agent, Run Command) is not blocked by NSGs.");
        return (plan, nics);
    }

    /// <summary>Attaches the NSG to every NIC; writes the manifest (also on failure) and returns it.</summary>
    public async Task<CaptureResult> IsolateAsync(CancellationToken cancellationToken)
    {
        var recorder = new CustodyRecorder("azure", _vmId.ToString(), "isolate-nsg", _request, _log);
        try
        {
            (CapturePlan plan, IReadOnlyList<(string Nic, string? Nsg)> nics) = await PreflightAsync(cancellationToken).ConfigureAwait(false);
            recorder.Preflight(plan);
            bool flushed = await _arm.EnableFlushConnectionAsync(_nsgId.ToString(), cancellationToken).ConfigureAwait(false);
            recorder.Step("flush connections", flushed ? $"flushConnection enabled on {_nsgId}" : $"flushConnection already enabled on {_nsgId}");
            foreach ((string nic, string? before) in nics)
            {
                if (string.Equals(before, _nsgId.ToString(), StringComparison.OrdinalIgnoreCase))
                {
                    recorder.Step("attach nsg", $"{nic} already has {_nsgId}");
                    continue;
                }
                string? previous = await _arm.SetNicNsgAsync(nic, _nsgId.ToString(), cancellationToken).ConfigureAwait(false);
                recorder.Resource("networkInterface", nic, $"networkSecurityGroup {previous ?? "none"} -> {_nsgId} (previous recorded for restore)");
                recorder.Step("attach nsg", $"{nic}: {previous ?? "no NSG"} -> {_nsgId}");
            }
            if (_extras.RemovePublicIps)
            {
                foreach ((string nic, _) in nics)
                {
                    foreach ((string config, string publicIp) in await _arm.RemoveNicPublicIpsAsync(nic, cancellationToken).ConfigureAwait(false))
                    {
                        recorder.Resource("networkInterface", nic, $"ipConfiguration {config}: publicIPAddress {publicIp} detached (recorded for restore)");
                        recorder.Step("remove public ips", $"{nic} {config}: {publicIp} detached");
                    }
                }
            }
            if (_extras.RemoveManagedIdentity)
            {
                string? identity = await _arm.RemoveVmIdentityAsync(_vmId, cancellationToken).ConfigureAwait(false);
                if (identity is not null)
                {
                    recorder.Resource("virtualMachine", _vmId.ToString(), $"identity {identity} removed (type None; recorded for restore)");
                }
                recorder.Step("remove identity", identity is null ? $"{_vmId.Name} has no managed identity" : $"{_vmId.Name}: {identity} -> None");
            }
            Record(recorder);
            recorder.Complete();
            return new CaptureResult(recorder.Build(), recorder.Write());
        }
        catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            CaptureException error = e as CaptureException ?? new CaptureException(AzureCaptureConnector.Describe(e), e);
            Record(recorder);
            recorder.Fail(error);
            recorder.Write();
            throw error;
        }
    }

    private void Record(CustodyRecorder recorder)
    {
        foreach (AzureRequestRecord record in _arm.Log.Records)
        {
            recorder.RequestId(record.Service, $"{record.Operation} -> {record.Status}", record.RequestId);
        }
    }
}
