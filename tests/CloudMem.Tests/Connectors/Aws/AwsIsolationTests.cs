using Amazon.Runtime;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>Isolation against the EC2/Auto Scaling fake (no S3 needed): the calls, in order, and the manifest.</summary>
public sealed class AwsIsolationTests : IDisposable
{
    private readonly FakeAws _fake = new();
    private readonly TempDir _dir = new();
    private readonly StringWriter _log = new();

    private AwsIsolationConnector Connector(string? replacement = null, string isolation = "sg-0closed", string transition = "sg-0open", bool revoke = false)
    {
        var clients = AwsClients.Create(new AwsConnection
        {
            Region = "eu-west-1",
            Credentials = new BasicAWSCredentials(AwsHarness.AccessKey, AwsHarness.SecretKey),
            Endpoints = new AwsEndpoints { Ec2 = _fake.Url, Ssm = _fake.Url, Sts = _fake.Url, AutoScaling = _fake.Url, Iam = _fake.Url, S3 = _fake.Url },
        });
        return new AwsIsolationConnector(clients, new AwsIsolationOptions
        {
            InstanceId = _fake.InstanceId,
            IsolationSecurityGroup = isolation,
            TransitionSecurityGroup = transition,
            ReplacementInstanceProfile = replacement,
            RevokeRoleSessions = revoke,
        }, new CaptureRequest { CaseId = "IR-7", OutputDirectory = _dir.Path }, new CaptureLog(new SecretScrubber(), _log));
    }

    [Fact]
    public async Task Isolation_runs_its_steps_in_order_and_records_them()
    {
        _fake.AutoScalingGroup = "web-asg";
        CaptureResult result = await Connector().IsolateAsync(CancellationToken.None);

        string[] mutating = [.. _fake.Operations.Where(o => !o.Contains(":Describe", StringComparison.Ordinal) && o != "sts:GetCallerIdentity")];
        Assert.Equal(
        [
            "ec2:ModifyInstanceAttribute",
            "autoscaling:EnterStandby",
            "ec2:ModifyNetworkInterfaceAttribute", "ec2:ModifyNetworkInterfaceAttribute",
            "ec2:ModifyNetworkInterfaceAttribute", "ec2:ModifyNetworkInterfaceAttribute",
            "ec2:DisassociateIamInstanceProfile",
            "ec2:CreateTags",
        ], mutating);
        var eniCalls = _fake.Calls.Where(c => c.Operation == "ModifyNetworkInterfaceAttribute").Select(c => System.Web.HttpUtility.ParseQueryString(c.Body)).ToList();
        Assert.Equal(["eni-0aa:sg-0open", "eni-0bb:sg-0open", "eni-0aa:sg-0closed", "eni-0bb:sg-0closed"], eniCalls.Select(q => $"{q["NetworkInterfaceId"]}:{q["SecurityGroupId.1"]}"));
        Assert.Contains("DisableApiTermination.Value=true", _fake.Calls.First(c => c.Operation == "ModifyInstanceAttribute").Body, StringComparison.Ordinal);
        FakeCall standby = _fake.Calls.First(c => c.Operation == "EnterStandby");
        Assert.Contains("ShouldDecrementDesiredCapacity=false", standby.Body, StringComparison.Ordinal);
        Assert.Matches(@"^AWS4-HMAC-SHA256 Credential=AKIAFAKE0TEST0KEY123/\d{8}/eu-west-1/autoscaling/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=[0-9a-f]{64}$", standby.Authorization);
        Assert.All(_fake.Interfaces, i => Assert.Equal(["sg-0closed"], i.Groups));

        CustodyManifest manifest = CustodyManifest.Read(result.ManifestPath);
        Assert.Equal(CustodyStatus.Completed, manifest.Status);
        Assert.Equal("isolate", manifest.Method);
        Assert.Equal(
        [
            "termination protection", "auto scaling standby",
            "security groups, step 1", "security groups, step 1", "security groups, step 2", "security groups, step 2",
            "instance profile", "tag instance",
        ], manifest.Steps.Where(s => s.Action != "preflight").Select(s => s.Action));
        Assert.Contains(manifest.Resources, r => r is { Kind: "original-security-groups", Id: "eni-0aa", Detail: "sg-0web" });
        Assert.Contains(manifest.Resources, r => r is { Kind: "original-instance-profile", Id: "iip-assoc-0aa" });
        foreach (FakeCall call in _fake.Calls)
        {
            Assert.Contains(manifest.RequestIds, r => r.RequestId == call.RequestId);
        }
        string everything = File.ReadAllText(result.ManifestPath) + _log;
        Assert.DoesNotContain(AwsHarness.SecretKey, everything, StringComparison.Ordinal);
        Assert.DoesNotContain(AwsHarness.AccessKey, everything, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_replacement_profile_is_put_in_place_and_no_group_means_no_standby()
    {
        await Connector(replacement: "quarantine-profile").IsolateAsync(CancellationToken.None);
        Assert.DoesNotContain("autoscaling:EnterStandby", _fake.Operations);
        Assert.DoesNotContain("autoscaling:DescribeAutoScalingInstances", _fake.Operations);
        FakeCall replace = Assert.Single(_fake.Calls, c => c.Operation == "ReplaceIamInstanceProfileAssociation");
        Assert.Contains("IamInstanceProfile.Name=quarantine-profile", replace.Body, StringComparison.Ordinal);
        Assert.Contains("AssociationId=iip-assoc-0aa", replace.Body, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Plan_makes_no_mutating_call()
    {
        _fake.AutoScalingGroup = "web-asg";
        CapturePlan plan = await Connector().PlanAsync(CancellationToken.None);
        Assert.True(plan.Ready, plan.ToText());
        Assert.All(_fake.Operations, o => Assert.True(o.Contains(":Describe", StringComparison.Ordinal) || o == "sts:GetCallerIdentity", o));
        string text = plan.ToText();
        Assert.Contains("ModifyNetworkInterfaceAttribute eni-0aa Groups=[sg-0open]", text, StringComparison.Ordinal);
        Assert.Contains("EnterStandby web-asg", text, StringComparison.Ordinal);
        Assert.Empty(Directory.GetFiles(_dir.Path));
    }

    [Fact]
    public async Task Groups_with_the_wrong_rules_are_refused_before_any_change()
    {
        _fake.SecurityGroups["sg-0half"] = (true, false, 1);
        _fake.SecurityGroups["sg-0ssh"] = (false, false, 1);
        var error = await Assert.ThrowsAsync<CaptureException>(() => Connector(transition: "sg-0half").IsolateAsync(CancellationToken.None));
        Assert.Contains("preflight 'transition group' failed", error.Message, StringComparison.Ordinal);
        Assert.Contains("NOT all traffic out", error.Message, StringComparison.Ordinal);
        error = await Assert.ThrowsAsync<CaptureException>(() => Connector(isolation: "sg-0ssh").IsolateAsync(CancellationToken.None));
        Assert.Contains("1 inbound and 1 outbound rules (both must be 0)", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(_fake.Operations, o => o.Contains("Modify", StringComparison.Ordinal));
        Assert.All(Directory.GetFiles(_dir.Path, "*.custody.json"), p => Assert.Equal(CustodyStatus.Failed, CustodyManifest.Read(p).Status));
    }

    [Fact]
    public async Task Dual_stack_instance_needs_a_transition_group_open_to_ipv6_too()
    {
        _fake.Ipv6 = true;
        var error = await Assert.ThrowsAsync<CaptureException>(() => Connector().IsolateAsync(CancellationToken.None));
        Assert.Contains("preflight 'transition group' failed", error.Message, StringComparison.Ordinal);
        Assert.Contains("NOT all traffic in, NOT all traffic out from 0.0.0.0/0 and ::/0 (the instance has IPv6 addresses)", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(_fake.Operations, o => o.Contains("Modify", StringComparison.Ordinal));

        _fake.Ipv6OpenGroups.Add("sg-0open");
        CapturePlan plan = await Connector().PlanAsync(CancellationToken.None);
        Assert.True(plan.Ready, plan.ToText());
        Assert.Contains(plan.Checks, c => c.Name == "transition group" && c.Reason.Contains("all traffic in, all traffic out from 0.0.0.0/0 and ::/0", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Opt_in_revokes_the_sessions_the_instance_role_already_issued()
    {
        DateTimeOffset before = DateTimeOffset.UtcNow.AddSeconds(-1);
        CaptureResult result = await Connector(revoke: true).IsolateAsync(CancellationToken.None);

        Assert.Equal(CustodyStatus.Completed, result.Manifest.Status);
        // The profile is disassociated first (no new credentials from the metadata service), then the role's older
        // sessions are denied: the AWSRevokeOlderSessions pattern, an inline policy keyed on aws:TokenIssueTime.
        List<string> operations = [.. _fake.Operations];
        Assert.True(operations.IndexOf("ec2:DisassociateIamInstanceProfile") < operations.IndexOf("iam:PutRolePolicy"), string.Join(", ", operations));
        Assert.Contains("iam:GetInstanceProfile", operations);
        string document = _fake.RolePolicies[("web-role", AwsIsolationConnector.RevokePolicyName)];
        using var policy = System.Text.Json.JsonDocument.Parse(document);
        var statement = policy.RootElement.GetProperty("Statement")[0];
        Assert.Equal("Deny", statement.GetProperty("Effect").GetString());
        Assert.Equal("*", statement.GetProperty("Action")[0].GetString());
        Assert.Equal("*", statement.GetProperty("Resource")[0].GetString());
        DateTimeOffset cutoff = DateTimeOffset.Parse(statement.GetProperty("Condition").GetProperty("DateLessThan").GetProperty("aws:TokenIssueTime").GetString()!, System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(cutoff, before, DateTimeOffset.UtcNow.AddSeconds(1));
        Assert.Contains(result.Manifest.Resources, r => r.Kind == "role-sessions-revoked" && r.Id == "web-role");
        Assert.Contains(result.Manifest.RequestIds, r => r.Service == "iam" && r.Operation.Contains("PutRolePolicy", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Without_the_opt_in_no_iam_call_is_made()
    {
        await Connector().IsolateAsync(CancellationToken.None);
        Assert.DoesNotContain(_fake.Operations, o => o.StartsWith("iam:", StringComparison.Ordinal));
    }

    public void Dispose()
    {
        _fake.Dispose();
        _dir.Dispose();
    }
}
