using Amazon.Runtime;

namespace CloudMem.Connectors.Aws;

/// <summary>The acquisition tool run in the guest.</summary>
public enum AwsAcquisitionTool
{
    /// <summary>AVML (Linux): LiME output, streamed through a pipe.</summary>
    Avml,
    /// <summary>WinPmem (Windows): raw output written to a local file, then uploaded in parts.</summary>
    WinPmem,
}

/// <summary>How memory is taken.</summary>
public enum AwsCaptureMethod
{
    /// <summary>SSM Run Command runs AVML/WinPmem in the guest; the image goes to S3 through presigned part URLs.</summary>
    Ssm,
    /// <summary>Hibernate the instance (StopInstances Hibernate=true) and snapshot the root volume.</summary>
    Hibernate,
}

/// <summary>
/// Service endpoints. Null = the SDK's regional endpoint. Tests point them at local servers; the guest reaches S3
/// through the same endpoint the presigned URLs name.
/// </summary>
public sealed record AwsEndpoints
{
    /// <summary>EC2 (Query protocol).</summary>
    public string? Ec2 { get; init; }

    /// <summary>Systems Manager (JSON 1.1).</summary>
    public string? Ssm { get; init; }

    /// <summary>S3 (path style is forced when set).</summary>
    public string? S3 { get; init; }

    /// <summary>STS (caller identity).</summary>
    public string? Sts { get; init; }

    /// <summary>Auto Scaling (Query protocol, our own signed client).</summary>
    public string? AutoScaling { get; init; }

    /// <summary>DynamoDB (the responder's de-duplication and lock table).</summary>
    public string? DynamoDb { get; init; }

    /// <summary>KMS (manifest signing with an asymmetric key).</summary>
    public string? Kms { get; init; }

    /// <summary>IAM (Query protocol, our own signed client: isolation's opt-in session revocation).</summary>
    public string? Iam { get; init; }

    /// <summary>EBS direct APIs (hibernation read-back: ListSnapshotBlocks/GetSnapshotBlock).</summary>
    public string? Ebs { get; init; }
}

/// <summary>Where and how to reach AWS: region, endpoints, credentials (null = the SDK default chain).</summary>
public sealed record AwsConnection
{
    /// <summary>Region system name (null: the SDK's default region resolution).</summary>
    public string? Region { get; init; }

    /// <summary>Endpoint overrides.</summary>
    public AwsEndpoints Endpoints { get; init; } = new();

    /// <summary>
    /// Credentials; null means the SDK default chain (environment, profile, SSO, container, instance metadata).
    /// Never logged and never sent to the guest.
    /// </summary>
    public AWSCredentials? Credentials { get; init; }
}

/// <summary>Options of <c>cloudmem capture aws</c>.</summary>
public sealed record AwsCaptureOptions
{
    /// <summary>The instance.</summary>
    public required string InstanceId { get; init; }

    /// <summary>Evidence bucket.</summary>
    public required string Bucket { get; init; }

    /// <summary>Key prefix in the bucket ("" = root).</summary>
    public string Prefix { get; init; } = "cloudmem";

    /// <summary>Capture method.</summary>
    public AwsCaptureMethod Method { get; init; } = AwsCaptureMethod.Ssm;

    /// <summary>Tool; null = AVML for Linux, WinPmem for Windows.</summary>
    public AwsAcquisitionTool? Tool { get; init; }

    /// <summary>A local tool binary to stage in the bucket; null = use the one already there (under PREFIX/tools/).</summary>
    public string? ToolFile { get; init; }

    /// <summary>Smallest part size (S3 needs at least 5 MiB); raised so the image fits in <see cref="MaxParts"/> parts.</summary>
    public long MinPartBytes { get; init; } = 64L << 20;

    /// <summary>Most parts presigned (keeps the guest's report well inside SSM's 24,000-character output).</summary>
    public int MaxParts { get; init; } = 250;

    /// <summary>How long presigned URLs stay valid beyond the command timeout.</summary>
    public TimeSpan UrlMargin { get; init; } = TimeSpan.FromMinutes(15);

    /// <summary>Keep the evidence in the output directory (it is always streamed back and hashed).</summary>
    public bool Download { get; init; }

    /// <summary>Tag the instance with the case id and the evidence key.</summary>
    public bool TagInstance { get; init; } = true;

    /// <summary>The SSM Command documents SendCommand runs (default: AWS-RunShellScript / AWS-RunPowerShellScript, any version).</summary>
    public SsmDocuments Documents { get; init; } = SsmDocuments.AwsOwned;
}

/// <summary>Options of <c>cloudmem isolate aws</c>.</summary>
public sealed record AwsIsolationOptions
{
    /// <summary>The instance.</summary>
    public required string InstanceId { get; init; }

    /// <summary>The isolation security group (no inbound, no outbound rules).</summary>
    public required string IsolationSecurityGroup { get; init; }

    /// <summary>
    /// The first security group applied (AWS incident-response guidance): one whose rules allow all traffic in and
    /// out from 0.0.0.0/0, so the instance's existing tracked connections become untracked; the isolation group
    /// applied next then ends them at once (tracked connections would otherwise survive the change). Required.
    /// </summary>
    public required string TransitionSecurityGroup { get; init; }

    /// <summary>Instance profile (name or ARN) to put in place of the current one; null = disassociate.</summary>
    public string? ReplacementInstanceProfile { get; init; }

    /// <summary>
    /// Opt-in: after the profile is removed, revoke the sessions its role had already issued (credentials the
    /// instance, or an intruder, took from the metadata service stay valid for hours otherwise): an inline deny-all
    /// policy on the role for sessions issued before now (aws:TokenIssueTime, the AWSRevokeOlderSessions pattern).
    /// It applies to every holder of an older session of that role, other instances included, until they refresh.
    /// </summary>
    public bool RevokeRoleSessions { get; init; }
}

/// <summary>
/// The SSM Command documents the capture runs: our own pinned copies (infra/aws creates them, with the same parameters
/// as AWS-RunShellScript / AWS-RunPowerShellScript, and lets the responder's role run only those) or the AWS-owned ones.
/// </summary>
/// <param name="Linux">The Linux document (runShellScript with <c>commands</c> and <c>executionTimeout</c>).</param>
/// <param name="Windows">The Windows document (runPowerShellScript, same parameters).</param>
/// <param name="Version">The version SendCommand names (a changed document is not run until this changes); null: the default version.</param>
public sealed record SsmDocuments(string Linux, string Windows, string? Version = null)
{
    /// <summary>AWS-RunShellScript and AWS-RunPowerShellScript, default version.</summary>
    public static SsmDocuments AwsOwned { get; } = new("AWS-RunShellScript", "AWS-RunPowerShellScript");
}
