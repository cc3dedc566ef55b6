using Amazon.EC2.Model;
using Amazon.S3.Model;
using Amazon.SecurityToken.Model;
using Amazon.SimpleSystemsManagement.Model;
using CloudMem.Connectors.Core;
using Ec2Filter = Amazon.EC2.Model.Filter;

namespace CloudMem.Connectors.Aws;

/// <summary>What the read-only preflight learned about the instance, the agent, the bucket and the tool.</summary>
internal sealed class AwsFacts
{
    public Instance? Instance { get; set; }
    public bool IsWindows { get; set; }
    public long? MemoryMiB { get; set; }
    public InstanceInformation? Agent { get; set; }
    public bool BucketReachable { get; set; }
    public string? CallerArn { get; set; }
    public AwsAcquisitionTool Tool { get; set; }
    public string ToolKey { get; set; } = "";
    public bool ToolInBucket { get; set; }
    public string? LocalToolSha256 { get; set; }
    public string? AutoScalingGroup { get; set; }
}

/// <summary>The read-only checks every AWS operation starts with.</summary>
internal static class AwsPreflight
{
    public static async Task<Instance?> DescribeInstanceAsync(AwsClients clients, AwsCalls calls, string instanceId, CancellationToken cancellationToken)
    {
        DescribeInstancesResponse response = await calls.Run("ec2", "DescribeInstances",
            t => clients.Ec2.DescribeInstancesAsync(new DescribeInstancesRequest { InstanceIds = [instanceId] }, t), cancellationToken).ConfigureAwait(false);
        return response.Reservations?.SelectMany(r => r.Instances ?? []).FirstOrDefault(i => i.InstanceId == instanceId);
    }

    public static async Task<string?> CallerArnAsync(AwsClients clients, AwsCalls calls, CancellationToken cancellationToken)
    {
        GetCallerIdentityResponse identity = await calls.Run("sts", "GetCallerIdentity",
            t => clients.Sts.GetCallerIdentityAsync(new GetCallerIdentityRequest(), t), cancellationToken).ConfigureAwait(false);
        return identity.Arn;
    }

    public static bool CheckInstance(CapturePlan plan, Instance? instance, string instanceId, bool mustRun = true)
    {
        if (!plan.Check("instance exists", instance is not null, instance is null ? $"DescribeInstances returned no instance {instanceId}" : $"{instance.InstanceType} in {instance.Placement?.AvailabilityZone ?? "?"}"))
        {
            return false;
        }
        string state = instance!.State?.Name?.Value ?? "unknown";
        return !mustRun || plan.Check("instance state", state == "running", state == "running" ? "running" : $"{state} (must be running)");
    }

    public static string PlatformOf(Instance instance)
        => string.Equals(instance.Platform?.Value, "windows", StringComparison.OrdinalIgnoreCase)
            || (instance.PlatformDetails?.Contains("Windows", StringComparison.OrdinalIgnoreCase) ?? false)
            ? "Windows" : "Linux";

    public static string? AutoScalingGroupOf(Instance instance)
        => instance.Tags?.FirstOrDefault(t => t.Key == "aws:autoscaling:groupName")?.Value;

    public static async Task GatherCaptureFactsAsync(AwsClients clients, AwsCalls calls, AwsCaptureOptions options, CapturePlan plan, AwsFacts facts, CancellationToken cancellationToken)
    {
        facts.CallerArn = await CallerArnAsync(clients, calls, cancellationToken).ConfigureAwait(false);
        plan.Check("caller identity", facts.CallerArn is not null, facts.CallerArn ?? "GetCallerIdentity returned no ARN");

        facts.Instance = await DescribeInstanceAsync(clients, calls, options.InstanceId, cancellationToken).ConfigureAwait(false);
        if (!CheckInstance(plan, facts.Instance, options.InstanceId, mustRun: true))
        {
            return;
        }
        Instance instance = facts.Instance!;
        string platform = PlatformOf(instance);
        facts.IsWindows = platform == "Windows";
        plan.Check("platform", true, platform);
        facts.AutoScalingGroup = AutoScalingGroupOf(instance);

        if (options.Method == AwsCaptureMethod.Hibernate)
        {
            bool configured = instance.HibernationOptions?.Configured == true;
            plan.Check("hibernation configured", configured, configured
                ? "HibernationOptions.Configured is true"
                : "HibernationOptions.Configured is false: hibernation must be enabled at launch; use the SSM method");
            plan.Check("root device", instance.RootDeviceType?.Value == "ebs", $"{instance.RootDeviceType?.Value ?? "unknown"} root device {instance.RootDeviceName}");
            return;
        }

        DescribeInstanceTypesResponse types = await calls.Run("ec2", "DescribeInstanceTypes",
            t => clients.Ec2.DescribeInstanceTypesAsync(new DescribeInstanceTypesRequest { InstanceTypes = [instance.InstanceType?.Value ?? ""] }, t), cancellationToken).ConfigureAwait(false);
        facts.MemoryMiB = types.InstanceTypes?.FirstOrDefault()?.MemoryInfo?.SizeInMiB;
        plan.Check("instance memory", facts.MemoryMiB is > 0, facts.MemoryMiB is > 0 ? $"{facts.MemoryMiB} MiB ({instance.InstanceType?.Value})" : $"DescribeInstanceTypes gave no memory size for {instance.InstanceType?.Value}");

        DescribeInstanceInformationResponse info = await calls.Run("ssm", "DescribeInstanceInformation",
            t => clients.Ssm.DescribeInstanceInformationAsync(new DescribeInstanceInformationRequest
            {
                Filters = [new InstanceInformationStringFilter { Key = "InstanceIds", Values = [options.InstanceId] }],
            }, t), cancellationToken).ConfigureAwait(false);
        facts.Agent = info.InstanceInformationList?.FirstOrDefault(i => i.InstanceId == options.InstanceId);
        string ping = facts.Agent?.PingStatus?.Value ?? "not registered";
        plan.Check("ssm agent", ping == "Online", facts.Agent is null
            ? "the instance is not registered with Systems Manager (agent missing, no instance profile with AmazonSSMManagedInstanceCore, or no route to SSM)"
            : $"{ping}, agent {facts.Agent.AgentVersion}, {facts.Agent.PlatformType?.Value} {facts.Agent.PlatformName} {facts.Agent.PlatformVersion}");

        facts.Tool = options.Tool ?? (facts.IsWindows ? AwsAcquisitionTool.WinPmem : AwsAcquisitionTool.Avml);
        bool toolFits = facts.IsWindows ? facts.Tool == AwsAcquisitionTool.WinPmem : facts.Tool == AwsAcquisitionTool.Avml;
        plan.Check("tool", toolFits, toolFits ? $"{ToolName(facts.Tool)} for {platform}" : $"{ToolName(facts.Tool)} does not run on {platform}");

        try
        {
            await calls.Run("s3", "ListObjectsV2", t => clients.S3.ListObjectsV2Async(new ListObjectsV2Request { BucketName = options.Bucket, Prefix = options.Prefix, MaxKeys = 1 }, t), cancellationToken).ConfigureAwait(false);
            facts.BucketReachable = true;
            plan.Check("evidence bucket", true, $"s3://{options.Bucket}/{options.Prefix} is listable");
        }
        catch (CaptureException e)
        {
            plan.Check("evidence bucket", false, e.Message);
        }

        if (options.ToolFile is not null)
        {
            if (!File.Exists(options.ToolFile))
            {
                plan.Check("tool file", false, $"{options.ToolFile} does not exist");
                return;
            }
            (facts.LocalToolSha256, long length) = await Sha256Sink.HashFileAsync(options.ToolFile, cancellationToken).ConfigureAwait(false);
            facts.ToolKey = AwsKeys.Join(options.Prefix, "tools", $"{ToolFileName(facts.Tool)}-{facts.LocalToolSha256[..16]}");
            plan.Check("tool file", true, $"{options.ToolFile}: {length} bytes, sha256 {facts.LocalToolSha256}");
        }
        else
        {
            facts.ToolKey = AwsKeys.Join(options.Prefix, "tools", ToolFileName(facts.Tool));
        }
        if (facts.BucketReachable)
        {
            GetObjectMetadataResponse? head = await calls.TryRun("s3", "HeadObject",
                t => clients.S3.GetObjectMetadataAsync(options.Bucket, facts.ToolKey, t), cancellationToken, "NotFound", "NoSuchKey", "404").ConfigureAwait(false);
            facts.ToolInBucket = head is not null;
            plan.Check("tool staged", facts.ToolInBucket || options.ToolFile is not null, facts.ToolInBucket
                ? $"s3://{options.Bucket}/{facts.ToolKey} ({head!.ContentLength} bytes)"
                : options.ToolFile is not null ? $"will stage {options.ToolFile} as s3://{options.Bucket}/{facts.ToolKey}" : $"s3://{options.Bucket}/{facts.ToolKey} is missing: pass --tool-file to stage it");
        }
    }

    public static string ToolName(AwsAcquisitionTool tool) => tool == AwsAcquisitionTool.Avml ? "avml" : "winpmem";

    public static string ToolFileName(AwsAcquisitionTool tool) => tool == AwsAcquisitionTool.Avml ? "avml" : "winpmem.exe";
}

/// <summary>Object key helpers.</summary>
internal static class AwsKeys
{
    public static string Join(params string[] parts) => string.Join("/", parts.Select(p => p.Trim('/')).Where(p => p.Length > 0));
}
