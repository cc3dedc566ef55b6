using Amazon.EC2.Model;
using CloudMem.Connectors.Core;
using Ec2Tag = Amazon.EC2.Model.Tag;

namespace CloudMem.Connectors.Aws;

/// <summary>
/// <c>cloudmem isolate aws</c>: contains an instance without stopping it, each step recorded in a custody manifest:
/// termination protection on; Auto Scaling Standby when the instance is in a group (so the group neither replaces nor
/// routes to it); per network interface, the two-step security-group change of AWS's incident-response guidance
/// (first an all-open group so tracked connections become untracked, then the isolation group, which then ends them);
/// the instance profile replaced or disassociated; tags with the case id.
/// </summary>
public sealed class AwsIsolationConnector
{
    private readonly AwsClients _clients;
    private readonly AwsIsolationOptions _options;
    private readonly CaptureRequest _request;
    private readonly CaptureLog _log;

    /// <summary>Creates the connector.</summary>
    public AwsIsolationConnector(AwsClients clients, AwsIsolationOptions options, CaptureRequest request, CaptureLog log)
    {
        _clients = clients;
        _options = options;
        _request = request;
        _log = log;
        AwsCaptureConnector.RegisterCredentials(clients.Credentials, log.Scrubber);
    }

    private sealed class Facts
    {
        public Instance? Instance { get; set; }
        public List<InstanceNetworkInterface> Interfaces { get; } = [];
        public IamInstanceProfileAssociation? Association { get; set; }
        public AutoScalingInstance? AutoScaling { get; set; }
        public string? CallerArn { get; set; }
    }

    /// <summary>Checks and steps; calls only read-only APIs.</summary>
    public async Task<CapturePlan> PlanAsync(CancellationToken cancellationToken)
    {
        var plan = new CapturePlan("aws", _options.InstanceId, "isolate");
        Facts facts = await GatherAsync(plan, new AwsCalls(null), cancellationToken).ConfigureAwait(false);
        Describe(plan, facts);
        return plan;
    }

    /// <summary>Isolates the instance; the manifest is written whatever happens.</summary>
    public async Task<CaptureResult> IsolateAsync(CancellationToken cancellationToken)
    {
        var recorder = new CustodyRecorder("aws", _options.InstanceId, "isolate", _request, _log);
        var calls = new AwsCalls(recorder);
        var plan = new CapturePlan("aws", _options.InstanceId, "isolate");
        try
        {
            Facts facts = await GatherAsync(plan, calls, cancellationToken).ConfigureAwait(false);
            if (facts.CallerArn is not null)
            {
                recorder.Operator(facts.CallerArn, "sts:GetCallerIdentity");
            }
            recorder.Preflight(plan);
            await RunAsync(recorder, calls, facts, cancellationToken).ConfigureAwait(false);
            recorder.Complete();
            string path = recorder.Write();
            return new CaptureResult(recorder.Build(), path);
        }
        catch (Exception e)
        {
            recorder.Fail(e);
            string path = recorder.Write();
            _log.Warn($"manifest written: {path}");
            if (e is CaptureException or OperationCanceledException)
            {
                throw;
            }
            throw new CaptureException($"aws isolation of {_options.InstanceId} failed: {e.GetType().Name}: {e.Message}", e);
        }
    }

    private async Task<Facts> GatherAsync(CapturePlan plan, AwsCalls calls, CancellationToken cancellationToken)
    {
        var facts = new Facts { CallerArn = await AwsPreflight.CallerArnAsync(_clients, calls, cancellationToken).ConfigureAwait(false) };
        plan.Check("caller identity", facts.CallerArn is not null, facts.CallerArn ?? "GetCallerIdentity returned no ARN");
        facts.Instance = await AwsPreflight.DescribeInstanceAsync(_clients, calls, _options.InstanceId, cancellationToken).ConfigureAwait(false);
        if (!AwsPreflight.CheckInstance(plan, facts.Instance, _options.InstanceId, mustRun: false))
        {
            return facts;
        }
        Instance instance = facts.Instance!;
        string state = instance.State?.Name?.Value ?? "unknown";
        plan.Check("instance state", state is "running" or "stopped" or "stopping" or "pending", state);
        facts.Interfaces.AddRange(instance.NetworkInterfaces ?? []);
        plan.Check("network interfaces", facts.Interfaces.Count > 0, facts.Interfaces.Count == 0
            ? "none"
            : string.Join("; ", facts.Interfaces.Select(n => $"{n.NetworkInterfaceId}: {string.Join(",", (n.Groups ?? []).Select(g => g.GroupId))}")));

        DescribeSecurityGroupsResponse groups = await calls.Run("ec2", "DescribeSecurityGroups", t => _clients.Ec2.DescribeSecurityGroupsAsync(new DescribeSecurityGroupsRequest
        {
            GroupIds = [_options.TransitionSecurityGroup, _options.IsolationSecurityGroup],
        }, t), cancellationToken).ConfigureAwait(false);
        SecurityGroup? transition = groups.SecurityGroups?.FirstOrDefault(g => g.GroupId == _options.TransitionSecurityGroup);
        SecurityGroup? isolation = groups.SecurityGroups?.FirstOrDefault(g => g.GroupId == _options.IsolationSecurityGroup);
        // The transition group makes tracked connections untracked only for the families it opens: an instance with
        // IPv6 addresses needs ::/0 all-traffic rules too, or its IPv6 flows stay tracked and outlive the isolation.
        bool ipv6 = facts.Interfaces.Any(e => e.Ipv6Addresses is { Count: > 0 });
        bool openIn = transition is not null && AllOpen(transition.IpPermissions, ipv6), openOut = transition is not null && AllOpen(transition.IpPermissionsEgress, ipv6);
        string families = ipv6 ? "0.0.0.0/0 and ::/0 (the instance has IPv6 addresses)" : "0.0.0.0/0";
        plan.Check("transition group", transition is not null && openIn && openOut && transition.VpcId == instance.VpcId,
            transition is null ? $"{_options.TransitionSecurityGroup} not found"
            : $"{transition.GroupId} in {transition.VpcId}: {(openIn ? "all traffic in" : "NOT all traffic in")}, {(openOut ? "all traffic out" : "NOT all traffic out")} from {families}{(transition.VpcId == instance.VpcId ? "" : $"; NOT in the instance's VPC {instance.VpcId}")}");
        plan.Check("isolation group", isolation is not null && (isolation.IpPermissions?.Count ?? 0) == 0 && (isolation.IpPermissionsEgress?.Count ?? 0) == 0 && isolation.VpcId == instance.VpcId,
            isolation is null ? $"{_options.IsolationSecurityGroup} not found"
            : $"{isolation.GroupId} in {isolation.VpcId}: {isolation.IpPermissions?.Count ?? 0} inbound and {isolation.IpPermissionsEgress?.Count ?? 0} outbound rules (both must be 0){(isolation.VpcId == instance.VpcId ? "" : $"; NOT in the instance's VPC {instance.VpcId}")}");

        DescribeIamInstanceProfileAssociationsResponse associations = await calls.Run("ec2", "DescribeIamInstanceProfileAssociations", t => _clients.Ec2.DescribeIamInstanceProfileAssociationsAsync(new DescribeIamInstanceProfileAssociationsRequest
        {
            Filters = [new Filter("instance-id", [_options.InstanceId]), new Filter("state", ["associated"])],
        }, t), cancellationToken).ConfigureAwait(false);
        facts.Association = associations.IamInstanceProfileAssociations?.FirstOrDefault();
        plan.Check("instance profile", true, facts.Association is null ? "none associated" : $"{facts.Association.IamInstanceProfile?.Arn} ({facts.Association.AssociationId})");

        if (AwsPreflight.AutoScalingGroupOf(instance) is not null)
        {
            (facts.AutoScaling, string? requestId) = await _clients.AutoScaling.DescribeInstanceAsync(_options.InstanceId, cancellationToken).ConfigureAwait(false);
            calls.Note("autoscaling", "DescribeAutoScalingInstances", requestId);
        }
        plan.Check("auto scaling", true, facts.AutoScaling is null ? "not in a group" : $"{facts.AutoScaling.GroupName}, {facts.AutoScaling.LifecycleState}");
        return facts;
    }

    /// <summary>The opt-in AWSRevokeOlderSessions step: a deny-all inline policy for the role's sessions issued before now.</summary>
    private async Task RevokeRoleSessionsAsync(CustodyRecorder recorder, AwsCalls calls, string profileArn, CancellationToken cancellationToken)
    {
        // arn:aws:iam::ACCOUNT:instance-profile[/path]/NAME: GetInstanceProfile takes the name.
        string profileName = profileArn[(profileArn.LastIndexOf('/') + 1)..];
        (IReadOnlyList<string> roles, string? requestId) = await _clients.Iam.GetInstanceProfileRolesAsync(profileName, cancellationToken).ConfigureAwait(false);
        calls.Note("iam", "GetInstanceProfile", requestId);
        DateTimeOffset now = DateTimeOffset.UtcNow;
        string policy = IamClient.RevokeOlderSessionsPolicy(now);
        foreach (string role in roles)
        {
            calls.Note("iam", "PutRolePolicy", await _clients.Iam.PutRolePolicyAsync(role, RevokePolicyName, policy, cancellationToken).ConfigureAwait(false));
            recorder.Resource("role-sessions-revoked", role, $"inline policy {RevokePolicyName}: Deny * to sessions with aws:TokenIssueTime before {now.UtcDateTime:O} (delete the policy to undo)");
            recorder.Step("revoke role sessions", $"{role} (from {profileArn}): sessions issued before {now.UtcDateTime:O} denied");
        }
        if (roles.Count == 0)
        {
            recorder.Step("revoke role sessions", $"{profileArn} holds no role: nothing to revoke");
        }
    }

    /// <summary>The inline policy name isolation puts on the instance's role when revoking its sessions.</summary>
    public const string RevokePolicyName = "cloudmem-revoke-older-sessions";

    private static bool AllOpen(List<IpPermission>? permissions, bool ipv6)
        => (permissions?.Any(p => p.IpProtocol == "-1" && (p.Ipv4Ranges?.Any(r => r.CidrIp == "0.0.0.0/0") ?? false)) ?? false)
            && (!ipv6 || (permissions?.Any(p => p.IpProtocol == "-1" && (p.Ipv6Ranges?.Any(r => r.CidrIpv6 == "::/0") ?? false)) ?? false));

    private void Describe(CapturePlan plan, Facts facts)
    {
        plan.Step("termination protection", "ModifyInstanceAttribute DisableApiTermination=true");
        if (facts.AutoScaling is not null)
        {
            plan.Step("auto scaling standby", $"EnterStandby {facts.AutoScaling.GroupName} (desired capacity kept: the group launches a replacement)");
        }
        foreach (InstanceNetworkInterface eni in facts.Interfaces)
        {
            plan.Step("security groups, step 1", $"ModifyNetworkInterfaceAttribute {eni.NetworkInterfaceId} Groups=[{_options.TransitionSecurityGroup}] (all open: tracked connections become untracked)");
        }
        foreach (InstanceNetworkInterface eni in facts.Interfaces)
        {
            plan.Step("security groups, step 2", $"ModifyNetworkInterfaceAttribute {eni.NetworkInterfaceId} Groups=[{_options.IsolationSecurityGroup}] (no rules: untracked flows end, nothing new is allowed)");
        }
        if (facts.Association is not null)
        {
            plan.Step("instance profile", _options.ReplacementInstanceProfile is null
                ? $"DisassociateIamInstanceProfile {facts.Association.AssociationId}"
                : $"ReplaceIamInstanceProfileAssociation {facts.Association.AssociationId} -> {_options.ReplacementInstanceProfile}");
        }
        if (_options.RevokeRoleSessions)
        {
            plan.Step("revoke role sessions", $"GetInstanceProfile, then PutRolePolicy {RevokePolicyName} on its role: Deny * for sessions issued before now (aws:TokenIssueTime; every older session of the role, other instances included, until they refresh)");
        }
        plan.Step("tag instance", $"CreateTags cloudmem:isolated, cloudmem:case-id={_request.CaseId ?? "(none)"}");
        plan.Step("manifest", "write the custody manifest", mutating: false);
        plan.Notes.Add("the instance keeps running and keeps its memory; existing sessions (SSM included) end at step 2. Capture memory before isolating if the capture needs SSM or S3 access from the guest.");
    }

    private async Task RunAsync(CustodyRecorder recorder, AwsCalls calls, Facts facts, CancellationToken cancellationToken)
    {
        await calls.Run("ec2", "ModifyInstanceAttribute", t => _clients.Ec2.ModifyInstanceAttributeAsync(new ModifyInstanceAttributeRequest
        {
            InstanceId = _options.InstanceId,
            DisableApiTermination = true,
        }, t), cancellationToken).ConfigureAwait(false);
        recorder.Step("termination protection", "DisableApiTermination=true");

        if (facts.AutoScaling is not null)
        {
            string? requestId = await _clients.AutoScaling.EnterStandbyAsync(facts.AutoScaling.GroupName, _options.InstanceId, decrementDesiredCapacity: false, cancellationToken).ConfigureAwait(false);
            calls.Note("autoscaling", "EnterStandby", requestId);
            recorder.Step("auto scaling standby", $"{facts.AutoScaling.GroupName}: {_options.InstanceId} entering Standby");
        }

        foreach (InstanceNetworkInterface eni in facts.Interfaces)
        {
            recorder.Resource("original-security-groups", eni.NetworkInterfaceId, string.Join(",", (eni.Groups ?? []).Select(g => g.GroupId)));
        }
        foreach ((string group, string step) in new[] { (_options.TransitionSecurityGroup, "security groups, step 1"), (_options.IsolationSecurityGroup, "security groups, step 2") })
        {
            foreach (InstanceNetworkInterface eni in facts.Interfaces)
            {
                await calls.Run("ec2", "ModifyNetworkInterfaceAttribute", t => _clients.Ec2.ModifyNetworkInterfaceAttributeAsync(new ModifyNetworkInterfaceAttributeRequest
                {
                    NetworkInterfaceId = eni.NetworkInterfaceId,
                    Groups = [group],
                }, t), cancellationToken).ConfigureAwait(false);
                recorder.Step(step, $"{eni.NetworkInterfaceId} -> {group}");
            }
        }

        if (facts.Association is not null)
        {
            recorder.Resource("original-instance-profile", facts.Association.AssociationId, facts.Association.IamInstanceProfile?.Arn ?? "");
            if (_options.ReplacementInstanceProfile is null)
            {
                await calls.Run("ec2", "DisassociateIamInstanceProfile", t => _clients.Ec2.DisassociateIamInstanceProfileAsync(new DisassociateIamInstanceProfileRequest
                {
                    AssociationId = facts.Association.AssociationId,
                }, t), cancellationToken).ConfigureAwait(false);
                recorder.Step("instance profile", $"disassociated {facts.Association.IamInstanceProfile?.Arn}");
            }
            else
            {
                string replacement = _options.ReplacementInstanceProfile;
                var profile = replacement.StartsWith("arn:", StringComparison.Ordinal)
                    ? new IamInstanceProfileSpecification { Arn = replacement }
                    : new IamInstanceProfileSpecification { Name = replacement };
                await calls.Run("ec2", "ReplaceIamInstanceProfileAssociation", t => _clients.Ec2.ReplaceIamInstanceProfileAssociationAsync(new ReplaceIamInstanceProfileAssociationRequest
                {
                    AssociationId = facts.Association.AssociationId,
                    IamInstanceProfile = profile,
                }, t), cancellationToken).ConfigureAwait(false);
                recorder.Step("instance profile", $"{facts.Association.IamInstanceProfile?.Arn} replaced by {replacement}");
            }
        }

        if (_options.RevokeRoleSessions && facts.Association?.IamInstanceProfile?.Arn is { } profileArn)
        {
            await RevokeRoleSessionsAsync(recorder, calls, profileArn, cancellationToken).ConfigureAwait(false);
        }

        var tags = new List<Ec2Tag> { new("cloudmem:isolated", DateTimeOffset.UtcNow.ToString("O", System.Globalization.CultureInfo.InvariantCulture)) };
        if (_request.CaseId is not null)
        {
            tags.Add(new Ec2Tag("cloudmem:case-id", _request.CaseId));
        }
        await calls.Run("ec2", "CreateTags", t => _clients.Ec2.CreateTagsAsync(new CreateTagsRequest { Resources = [_options.InstanceId], Tags = tags }, t), cancellationToken).ConfigureAwait(false);
        recorder.Step("tag instance", string.Join(", ", tags.Select(t => $"{t.Key}={t.Value}")));
    }
}
