namespace CloudMem.Connectors.Aws;

/// <summary>Where an IAM action may be scoped: what the responder's policy names as the resource.</summary>
public enum AwsResourceScope
{
    /// <summary>No permission is needed (sts:GetCallerIdentity).</summary>
    None,
    /// <summary>The action supports no resource-level permission: "*" (read-only Describe/Get calls only).</summary>
    Any,
    /// <summary>arn:aws:ec2:REGION:ACCOUNT:instance/*.</summary>
    Instance,
    /// <summary>The evidence bucket itself (ListBucket).</summary>
    Bucket,
    /// <summary>Objects under the evidence prefix: arn:aws:s3:::BUCKET/PREFIX/*.</summary>
    EvidenceObjects,
    /// <summary>
    /// The one-time ticket objects only (arn:aws:s3:::BUCKET/PREFIX/*/.ticket-*): the one thing the role may delete, so
    /// the capturing identity can add evidence but never remove it (Object Lock COMPLIANCE keeps it from overwrites).
    /// </summary>
    TicketObjects,
    /// <summary>The one-time ticket parameters: arn:aws:ssm:REGION:ACCOUNT:parameter/cloudmem/ticket/*.</summary>
    TicketParameter,
    /// <summary>
    /// The stack's own two pinned documents (infra/aws: same parameters as AWS-RunShellScript and
    /// AWS-RunPowerShellScript), and instances tagged <c>cloudmem-capture</c> = the stack's value (aws:ResourceTag condition).
    /// </summary>
    RunCommandDocument,
    /// <summary>The evidence bucket's customer-managed KMS key (SSE-KMS by default).</summary>
    EvidenceKey,
    /// <summary>The responder's DynamoDB table (de-duplication and per-instance lock).</summary>
    LedgerTable,

    /// <summary>EBS volumes and snapshots (disk evidence: CreateSnapshot on the volume and the new snapshot; sharing only cloudmem-tagged snapshots).</summary>
    Snapshots,
}

/// <summary>One operation the connector calls and the IAM action that allows it.</summary>
public sealed record AwsPermission(string Operation, string Action, AwsResourceScope Scope, string Why);

/// <summary>
/// The table behind infra/aws/cloudmem-responder.yaml's role: every AWS operation the SSM capture path and the
/// responder's ledger (<see cref="DynamoCaptureLedger"/>) call (as
/// <c>AwsCalls</c> records them, "service:Operation"), with the IAM action and the narrowest resource it can be scoped
/// to. A test checks that every operation named in the AWS connector's code is either here or in
/// <see cref="NotGranted"/>, and that the template grants exactly these actions.
/// </summary>
public static class AwsCapturePermissions
{
    /// <summary>The capture (ssm method) path.</summary>
    public static IReadOnlyList<AwsPermission> Capture { get; } =
    [
        new("sts:GetCallerIdentity", "sts:GetCallerIdentity", AwsResourceScope.None, "operator identity for the manifest (needs no permission)"),
        new("ec2:DescribeInstances", "ec2:DescribeInstances", AwsResourceScope.Any, "preflight: state, platform, type"),
        new("ec2:DescribeInstanceTypes", "ec2:DescribeInstanceTypes", AwsResourceScope.Any, "preflight: memory size -> upload bound"),
        new("ssm:DescribeInstanceInformation", "ssm:DescribeInstanceInformation", AwsResourceScope.Any, "preflight: SSM agent online"),
        new("s3:ListObjectsV2", "s3:ListBucket", AwsResourceScope.Bucket, "preflight: bucket reachable"),
        new("s3:HeadObject", "s3:GetObject", AwsResourceScope.EvidenceObjects, "preflight: staged tool present; evidence size"),
        new("s3:PutObject", "s3:PutObject", AwsResourceScope.EvidenceObjects, "stage the tool, the ticket, the manifest"),
        new("s3:GetObject", "s3:GetObject", AwsResourceScope.EvidenceObjects, "hash the tool and the evidence on our side"),
        new("ec2:CreateTags", "ec2:CreateTags", AwsResourceScope.Instance, "tag the instance with the case id"),
        new("s3:CreateMultipartUpload", "s3:PutObject", AwsResourceScope.EvidenceObjects, "evidence upload"),
        new("s3:UploadPart (presigned)", "s3:PutObject", AwsResourceScope.EvidenceObjects, "the guest's presigned part uploads are signed with our role"),
        new("s3:GetObject (presigned)", "s3:GetObject", AwsResourceScope.EvidenceObjects, "the guest's presigned GETs (tool, ticket)"),
        new("ssm:PutParameter", "ssm:PutParameter", AwsResourceScope.TicketParameter, "one-time ticket parameter"),
        new("ssm:GetParameters (resolved by SendCommand)", "ssm:GetParameters", AwsResourceScope.TicketParameter, "Run Command resolves {{ssm:...}} with the caller's permission"),
        new("ssm:SendCommand", "ssm:SendCommand", AwsResourceScope.RunCommandDocument, "AVML/WinPmem through the stack's pinned documents, on tagged instances only"),
        new("ssm:GetCommandInvocation", "ssm:GetCommandInvocation", AwsResourceScope.Any, "poll the command"),
        new("ssm:CancelCommand", "ssm:CancelCommand", AwsResourceScope.Any, "cancel on timeout"),
        new("s3:CompleteMultipartUpload", "s3:PutObject", AwsResourceScope.EvidenceObjects, "finish the evidence object"),
        new("ssm:DeleteParameter", "ssm:DeleteParameter", AwsResourceScope.TicketParameter, "cleanup: the ticket parameter"),
        new("s3:DeleteObject", "s3:DeleteObject", AwsResourceScope.TicketObjects, "cleanup: the ticket object (the IAM resource admits no evidence key)"),
        new("s3:AbortMultipartUpload", "s3:AbortMultipartUpload", AwsResourceScope.EvidenceObjects, "cleanup on failure"),
        new("s3:PutObject / UploadPart (SSE-KMS)", "kms:GenerateDataKey", AwsResourceScope.EvidenceKey, "S3 encrypts every object and part with a data key of the evidence key"),
        new("s3:GetObject / CompleteMultipartUpload (SSE-KMS)", "kms:Decrypt", AwsResourceScope.EvidenceKey, "S3 decrypts the data key to read back (and to complete a multipart upload)"),
        new("ec2:CreateSnapshot", "ec2:CreateSnapshot", AwsResourceScope.Snapshots, "disk evidence: one snapshot per attached volume (workflow step snapshots; tags on create)"),
        new("ec2:DescribeSnapshots", "ec2:DescribeSnapshots", AwsResourceScope.Any, "disk evidence: which snapshots are completed before sharing (and the hibernate read-back's wait)"),
        new("ec2:ModifySnapshotAttribute", "ec2:ModifySnapshotAttribute", AwsResourceScope.Snapshots, "disk evidence: createVolumePermission for the forensic account (cloudmem-tagged snapshots only)"),
        new("dynamodb:PutItem", "dynamodb:PutItem", AwsResourceScope.LedgerTable, "claim the finding on the instance and the instance's lock (conditional writes)"),
        new("dynamodb:GetItem", "dynamodb:GetItem", AwsResourceScope.LedgerTable, "who holds a duplicate's claim or the lock (for the outcome's reason)"),
        new("dynamodb:UpdateItem", "dynamodb:UpdateItem", AwsResourceScope.LedgerTable, "record the outcome on the finding's item"),
        new("dynamodb:DeleteItem", "dynamodb:DeleteItem", AwsResourceScope.LedgerTable, "release the instance's lock (only our own)"),
    ];

    /// <summary>Operations of the AWS connectors the unattended responder does not get, and why.</summary>
    public static IReadOnlyDictionary<string, string> NotGranted { get; } = new Dictionary<string, string>
    {
        ["ec2:StopInstances"] = "hibernate method (opt-in, manual)",
        ["ec2:CreateSnapshots"] = "hibernate method (opt-in, manual)",
        ["ebs:ListSnapshotBlocks"] = "hibernate method (opt-in, manual): read the hibernation image back",
        ["ebs:GetSnapshotBlock"] = "hibernate method (opt-in, manual): read the hibernation image back",
        ["ec2:DescribeSecurityGroups"] = "isolation (manual)",
        ["ec2:DescribeIamInstanceProfileAssociations"] = "isolation (manual)",
        ["ec2:ModifyInstanceAttribute"] = "isolation (manual)",
        ["ec2:ModifyNetworkInterfaceAttribute"] = "isolation (manual)",
        ["ec2:DisassociateIamInstanceProfile"] = "isolation (manual)",
        ["ec2:ReplaceIamInstanceProfileAssociation"] = "isolation (manual)",
        ["autoscaling:DescribeAutoScalingInstances"] = "isolation (manual)",
        ["autoscaling:EnterStandby"] = "isolation (manual)",
        ["iam:GetInstanceProfile"] = "isolation's opt-in session revocation (manual)",
        ["iam:PutRolePolicy"] = "isolation's opt-in session revocation (manual)",
        ["kms:GetPublicKey"] = "manifest signing with a KMS key (opt-in: add it for the key, with kms:Sign)",
        ["kms:Sign"] = "manifest signing with a KMS key (opt-in: add it for the key, with kms:GetPublicKey)",
    };

    /// <summary>The permission for an operation as AwsCalls records it ("ssm:SendCommand"), or null.</summary>
    public static AwsPermission? ForOperation(string operation)
        => Capture.FirstOrDefault(p => p.Operation.Equals(operation, StringComparison.OrdinalIgnoreCase));

    /// <summary>The distinct IAM actions, sorted.</summary>
    public static IReadOnlyList<string> Actions(AwsResourceScope? scope = null)
        => [.. Capture.Where(p => p.Scope != AwsResourceScope.None && (scope is null || p.Scope == scope)).Select(p => p.Action).Distinct().Order(StringComparer.Ordinal)];
}
