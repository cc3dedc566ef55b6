using System.ComponentModel;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>AWS settings shared by capture and isolate.</summary>
internal class AwsCommandSettings : CaptureCommandSettings
{
    [CommandArgument(0, "<INSTANCE_ID>")]
    [Description("EC2 instance id (i-...)")]
    public string InstanceId { get; init; } = "";

    [CommandOption("--region <REGION>")]
    [Description("AWS region (default: the SDK's: AWS_REGION, profile)")]
    public string? Region { get; init; }

    public override ValidationResult Validate()
    {
        if (!InstanceId.StartsWith("i-", StringComparison.Ordinal) || InstanceId.Length > 32 || !InstanceId.Skip(2).All(char.IsAsciiLetterOrDigit))
        {
            return ValidationResult.Error($"'{InstanceId}' is not an EC2 instance id (i-...)");
        }
        return base.Validate();
    }

    /// <summary>
    /// Region and endpoints. Credentials always come from the SDK default chain; endpoints may be overridden with the
    /// SDK's own variables (AWS_ENDPOINT_URL_EC2, _SSM, _S3, _STS, _AUTO_SCALING, _DYNAMODB, _KMS), as for local test servers.
    /// </summary>
    public AwsConnection Connection() => ConnectionFor(Region);

    /// <summary>The connection for a region (null: AWS_REGION / AWS_DEFAULT_REGION), endpoints from the environment.</summary>
    public static AwsConnection ConnectionFor(string? region) => new()
    {
        Region = region ?? Environment.GetEnvironmentVariable("AWS_REGION") ?? Environment.GetEnvironmentVariable("AWS_DEFAULT_REGION"),
        Endpoints = new AwsEndpoints
        {
            Ec2 = Endpoint("EC2"),
            Ssm = Endpoint("SSM"),
            S3 = Endpoint("S3"),
            Sts = Endpoint("STS"),
            AutoScaling = Endpoint("AUTO_SCALING"),
            Iam = Endpoint("IAM"),
            DynamoDb = Endpoint("DYNAMODB"),
            Kms = Endpoint("KMS"),
        },
    };

    private static string? Endpoint(string service)
        => Environment.GetEnvironmentVariable($"AWS_ENDPOINT_URL_{service}") is { Length: > 0 } url ? url : null;
}

[Description("Capture the memory of an EC2 instance into S3 (SSM + AVML/WinPmem, or hibernation) with a custody manifest")]
internal sealed class AwsCaptureCommand : AsyncCommand<AwsCaptureCommand.Settings>
{
    internal sealed class Settings : AwsCommandSettings
    {
        [CommandOption("--bucket <BUCKET>")]
        [Description("Evidence bucket (required)")]
        public string Bucket { get; init; } = "";

        [CommandOption("--prefix <PREFIX>")]
        [Description("Key prefix in the bucket")]
        [DefaultValue("cloudmem")]
        public string Prefix { get; init; } = "cloudmem";

        [CommandOption("--tool <TOOL>")]
        [Description("avml (Linux) or winpmem (Windows); default by platform")]
        public string? Tool { get; init; }

        [CommandOption("--tool-file <FILE>")]
        [Description("Local tool binary to stage in the bucket (else PREFIX/tools/avml or winpmem.exe must be there)")]
        public string? ToolFile { get; init; }

        [CommandOption("--method <METHOD>")]
        [Description("ssm (default) or hibernate (opt-in: only instances launched with hibernation configured)")]
        [DefaultValue("ssm")]
        public string Method { get; init; } = "ssm";

        [CommandOption("--download")]
        [Description("Keep a verified local copy of the image in --out")]
        public bool Download { get; init; }

        [CommandOption("--min-part-mib <MIB>")]
        [Description("Smallest upload part in MiB (at least 5)")]
        [DefaultValue(64)]
        public int MinPartMiB { get; init; } = 64;

        public override ValidationResult Validate()
        {
            if (Bucket.Length is < 3 or > 63)
            {
                return ValidationResult.Error("--bucket is required (3-63 characters)");
            }
            if (Tool is not null and not ("avml" or "winpmem"))
            {
                return ValidationResult.Error("--tool must be avml or winpmem");
            }
            if (Method is not ("ssm" or "hibernate"))
            {
                return ValidationResult.Error("--method must be ssm or hibernate");
            }
            if (MinPartMiB is < 5 or > 5120)
            {
                return ValidationResult.Error("--min-part-mib must be between 5 and 5120");
            }
            return base.Validate();
        }

        public AwsCaptureOptions Options() => new()
        {
            InstanceId = InstanceId,
            Bucket = Bucket,
            Prefix = Prefix,
            Tool = Tool switch { "avml" => AwsAcquisitionTool.Avml, "winpmem" => AwsAcquisitionTool.WinPmem, _ => null },
            ToolFile = ToolFile,
            Method = Method == "hibernate" ? AwsCaptureMethod.Hibernate : AwsCaptureMethod.Ssm,
            Download = Download,
            MinPartBytes = (long)MinPartMiB << 20,
        };
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var scrubber = new SecretScrubber();
        CaptureLog log = CaptureCli.CreateLog(scrubber, settings.LogFile, out StreamWriter? logFile);
        try
        {
            using AwsClients clients = AwsClients.Create(settings.Connection());
            var connector = new AwsCaptureConnector(clients, settings.Options(), settings.ToRequest(settings.Download), log, CaptureCli.ParserOpener);
            if (settings.Plan)
            {
                CapturePlan plan = await connector.PlanAsync(cancellationToken);
                Console.Out.Write(plan.ToText(scrubber));
                plan.ThrowIfNotReady();
                return (int)ExitCode.Ok;
            }
            CaptureCli.PrintResult(await connector.CaptureAsync(cancellationToken));
            return (int)ExitCode.Ok;
        }
        finally
        {
            logFile?.Dispose();
        }
    }
}

[Description("Isolate an EC2 instance: termination protection, Auto Scaling standby, two-step security-group swap, instance profile removed")]
internal sealed class AwsIsolateCommand : AsyncCommand<AwsIsolateCommand.Settings>
{
    internal sealed class Settings : AwsCommandSettings
    {
        [CommandOption("--isolation-sg <SG>")]
        [Description("Security group with no inbound and no outbound rule (required)")]
        public string IsolationSg { get; init; } = "";

        [CommandOption("--transition-sg <SG>")]
        [Description("Security group allowing all traffic in and out from 0.0.0.0/0, applied first (required: AWS's guidance, so tracked connections end)")]
        public string TransitionSg { get; init; } = "";

        [CommandOption("--replace-profile <NAME_OR_ARN>")]
        [Description("Instance profile to put in place of the current one (default: disassociate)")]
        public string? ReplaceProfile { get; init; }

        [CommandOption("--revoke-role-sessions")]
        [Description("Also revoke the sessions the instance's role already issued (inline deny policy on aws:TokenIssueTime before now; affects every older session of that role)")]
        public bool RevokeRoleSessions { get; init; }

        public override ValidationResult Validate()
        {
            if (!IsolationSg.StartsWith("sg-", StringComparison.Ordinal) || !TransitionSg.StartsWith("sg-", StringComparison.Ordinal))
            {
                return ValidationResult.Error("--isolation-sg and --transition-sg are required security group ids (sg-...)");
            }
            if (IsolationSg == TransitionSg)
            {
                return ValidationResult.Error("--isolation-sg and --transition-sg must differ");
            }
            return base.Validate();
        }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var scrubber = new SecretScrubber();
        CaptureLog log = CaptureCli.CreateLog(scrubber, settings.LogFile, out StreamWriter? logFile);
        try
        {
            using AwsClients clients = AwsClients.Create(settings.Connection());
            var connector = new AwsIsolationConnector(clients, new AwsIsolationOptions
            {
                InstanceId = settings.InstanceId,
                IsolationSecurityGroup = settings.IsolationSg,
                TransitionSecurityGroup = settings.TransitionSg,
                ReplacementInstanceProfile = settings.ReplaceProfile,
                RevokeRoleSessions = settings.RevokeRoleSessions,
            }, settings.ToRequest(), log);
            if (settings.Plan)
            {
                CapturePlan plan = await connector.PlanAsync(cancellationToken);
                Console.Out.Write(plan.ToText(scrubber));
                plan.ThrowIfNotReady();
                return (int)ExitCode.Ok;
            }
            CaptureCli.PrintResult(await connector.IsolateAsync(cancellationToken));
            return (int)ExitCode.Ok;
        }
        finally
        {
            logFile?.Dispose();
        }
    }
}
