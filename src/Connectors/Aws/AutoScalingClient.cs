using System.Xml.Linq;
using Amazon.Runtime;

namespace CloudMem.Connectors.Aws;

/// <summary>One Auto Scaling instance as DescribeAutoScalingInstances reports it.</summary>
public sealed record AutoScalingInstance(string InstanceId, string GroupName, string LifecycleState);


/// <summary>
/// The two Auto Scaling calls isolation needs (DescribeAutoScalingInstances, EnterStandby) over the Query protocol
/// (<see cref="AwsQueryClient"/>): no Auto Scaling SDK package is available to us.
/// </summary>
/// <remarks>Thread-safe.</remarks>
public sealed class AutoScalingClient : IDisposable
{
    private static readonly XNamespace s_ns = "http://autoscaling.amazonaws.com/doc/2011-01-01/";
    private readonly AwsQueryClient _query;

    /// <summary>Creates the client for <paramref name="region"/> (or the given endpoint).</summary>
    public AutoScalingClient(AWSCredentials credentials, string region, string? serviceUrl)
    {
        _query = new AwsQueryClient(credentials, "autoscaling", "2011-01-01", region, new Uri(serviceUrl ?? $"https://autoscaling.{region}.amazonaws.com/"));
    }

    /// <summary>The group the instance belongs to, or null.</summary>
    public async Task<(AutoScalingInstance? Instance, string? RequestId)> DescribeInstanceAsync(string instanceId, CancellationToken cancellationToken)
    {
        AwsQueryResponse response = await _query.CallAsync("DescribeAutoScalingInstances", [new("InstanceIds.member.1", instanceId)], cancellationToken).ConfigureAwait(false);
        XElement? member = response.Body.Descendants(s_ns + "member").FirstOrDefault();
        AutoScalingInstance? instance = member is null ? null : new AutoScalingInstance(
            (string?)member.Element(s_ns + "InstanceId") ?? instanceId,
            (string?)member.Element(s_ns + "AutoScalingGroupName") ?? "",
            (string?)member.Element(s_ns + "LifecycleState") ?? "");
        return (instance, response.RequestId);
    }

    /// <summary>Moves the instance to Standby (the group stops health-replacing it); keeps the desired capacity unless told.</summary>
    public async Task<string?> EnterStandbyAsync(string groupName, string instanceId, bool decrementDesiredCapacity, CancellationToken cancellationToken)
    {
        AwsQueryResponse response = await _query.CallAsync("EnterStandby",
        [
            new("AutoScalingGroupName", groupName),
            new("InstanceIds.member.1", instanceId),
            new("ShouldDecrementDesiredCapacity", decrementDesiredCapacity ? "true" : "false"),
        ], cancellationToken).ConfigureAwait(false);
        return response.RequestId;
    }

    /// <inheritdoc />
    public void Dispose() => _query.Dispose();
}
