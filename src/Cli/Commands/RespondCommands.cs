using System.ComponentModel;
using System.Globalization;
using System.Runtime.InteropServices;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.Triggers;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>
/// What the three unattended entry points share: the responder's configuration, from options (respond) or from
/// environment variables (lambda, serve-function), and the targets built on the existing connectors.
/// </summary>
internal sealed record ResponderConfig
{
    public string? Bucket { get; init; }
    public string Prefix { get; init; } = "cloudmem";
    public string? ToolFile { get; init; }
    public string? ToolVersion { get; init; }
    public string? ContainerUrl { get; init; }
    public string? ArmEndpoint { get; init; }
    public double MinSeverity { get; init; } = TriggerPolicy.DefaultMinSeverity;
    public IReadOnlyList<string> AllowedTypes { get; init; } = [];
    public bool PlanOnly { get; init; }
    public bool Download { get; init; }
    public string Out { get; init; } = ".";
    public double TimeoutMinutes { get; init; } = 120;
    public double PollSeconds { get; init; } = 5;
    public int? MinPartMiB { get; init; }
    public string? DedupeTable { get; init; }
    public string? SignKey { get; init; }
    public string? SignKmsKey { get; init; }
    public string? SignKeyVaultKey { get; init; }
    public bool DiskSnapshots { get; init; } = true;
    public string? ForensicAccount { get; init; }
    public AzureForensicTarget? ForensicAzure { get; init; }
    public SsmDocuments Documents { get; init; } = SsmDocuments.AwsOwned;
    public string? DurableStorage { get; init; }
    public string DurableHub { get; init; } = "cloudmem";
    public string DurableTable { get; init; } = "cloudmemcaptures";
    public DurableHubTimings DurableTimings { get; init; } = new();

    /// <summary>Environment variables of the Lambda and the Function App (names in infra/README.md).</summary>
    public static ResponderConfig FromEnvironment(string defaultOut)
    {
        static string? Get(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value ? value.Trim() : null;
        static double Number(string name, double fallback)
        {
            string? text = Get(name);
            if (text is null)
            {
                return fallback;
            }
            return double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out double value) && value > 0
                ? value : throw new CaptureException($"{name}='{text}' is not a positive number");
        }
        string? dryRun = Get("CLOUDMEM_DRY_RUN");
        return new ResponderConfig
        {
            Bucket = Get("CLOUDMEM_BUCKET"),
            Prefix = Get("CLOUDMEM_PREFIX") ?? "cloudmem",
            ToolFile = Get("CLOUDMEM_TOOL_FILE"),
            ToolVersion = Get("CLOUDMEM_TOOL_VERSION"),
            ContainerUrl = Get("CLOUDMEM_CONTAINER_URL"),
            ArmEndpoint = Get("CLOUDMEM_ARM_ENDPOINT"),
            MinSeverity = Number("CLOUDMEM_MIN_SEVERITY", TriggerPolicy.DefaultMinSeverity),
            AllowedTypes = TriggerPolicy.ParseAllowList(Get("CLOUDMEM_ALLOWED_TYPES")),
            PlanOnly = dryRun is not null && dryRun is not ("0" or "false" or "False" or "no"),
            Out = Get("CLOUDMEM_OUT") ?? defaultOut,
            TimeoutMinutes = Number("CLOUDMEM_TIMEOUT_MINUTES", 120),
            PollSeconds = Number("CLOUDMEM_POLL_SECONDS", 5),
            MinPartMiB = Get("CLOUDMEM_MIN_PART_MIB") is null ? null : (int)Number("CLOUDMEM_MIN_PART_MIB", 64),
            DedupeTable = Get("CLOUDMEM_DEDUPE_TABLE"),
            SignKey = Get("CLOUDMEM_SIGN_KEY"),
            SignKmsKey = Get("CLOUDMEM_SIGN_KMS_KEY"),
            SignKeyVaultKey = Get("CLOUDMEM_SIGN_KEYVAULT_KEY"),
            DiskSnapshots = !string.Equals(Get("CLOUDMEM_DISK_SNAPSHOTS"), "false", StringComparison.OrdinalIgnoreCase),
            ForensicAccount = Get("CLOUDMEM_FORENSIC_ACCOUNT"),
            ForensicAzure = (Get("CLOUDMEM_FORENSIC_SUBSCRIPTION"), Get("CLOUDMEM_FORENSIC_RESOURCE_GROUP")) switch
            {
                (null, null) => null,
                ({ } subscription, { } group) => new AzureForensicTarget(subscription, group, Get("CLOUDMEM_FORENSIC_LOCATION")),
                _ => throw new CaptureException("CLOUDMEM_FORENSIC_SUBSCRIPTION and CLOUDMEM_FORENSIC_RESOURCE_GROUP go together (where the disk snapshots are copied)"),
            },
            Documents = new SsmDocuments(
                Get("CLOUDMEM_SSM_DOCUMENT_LINUX") ?? SsmDocuments.AwsOwned.Linux,
                Get("CLOUDMEM_SSM_DOCUMENT_WINDOWS") ?? SsmDocuments.AwsOwned.Windows,
                Get("CLOUDMEM_SSM_DOCUMENT_VERSION")),
            DurableStorage = Get("CLOUDMEM_DURABLE_STORAGE"),
            DurableHub = Get("CLOUDMEM_DURABLE_HUB") ?? "cloudmem",
            DurableTable = Get("CLOUDMEM_DURABLE_TABLE") ?? "cloudmemcaptures",
            DurableTimings = Get("CLOUDMEM_DURABLE_VISIBILITY_SECONDS") is null ? new DurableHubTimings() : new DurableHubTimings
            {
                WorkItemVisibility = TimeSpan.FromSeconds(Number("CLOUDMEM_DURABLE_VISIBILITY_SECONDS", 300)),
                ControlVisibility = TimeSpan.FromSeconds(Number("CLOUDMEM_DURABLE_VISIBILITY_SECONDS", 300)),
                Lease = TimeSpan.FromSeconds(Math.Max(6, Number("CLOUDMEM_DURABLE_VISIBILITY_SECONDS", 300))),
                MaxPollingInterval = TimeSpan.FromSeconds(1),
            },
        };
    }

    /// <summary>
    /// The Azure durable workflow (hub in CLOUDMEM_DURABLE_STORAGE, claims in CLOUDMEM_DURABLE_TABLE of the same
    /// account) over the Azure target; null when no durable storage or no container is configured.
    /// </summary>
    public (DurableCaptureHub Hub, AzureWorkflowSteps Steps, TableCaptureLedger Ledger)? BuildDurable(CaptureLog log)
    {
        if (DurableStorage is null || ContainerUrl is null)
        {
            return null;
        }
        Uri container = new(ContainerUrl);
        AzureTarget.ParseContainerUrl(container);
        var target = new AzureResponderTarget(container, AzureCli.CredentialFactory, AzureCli.StorageKey(container, log.Scrubber), AzureCli.Arm(ArmEndpoint), ToolFile, ToolVersion, CaptureCli.ParserOpener);
        TableCaptureLedger ledger = TableCaptureLedger.Create(DurableStorage, DurableTable, log);
        var steps = new AzureWorkflowSteps(new TriggerPolicy { MinSeverity = MinSeverity, AllowedTypes = AllowedTypes }, target, ledger, log)
        {
            Timeouts = CaptureTimeouts.From(TimeoutMinutes, PollSeconds),
            OutputDirectory = Out,
            Signer = CaptureCli.Signer(SignKey, SignKmsKey, SignKeyVaultKey),
            DiskSnapshots = DiskSnapshots,
            ForensicTarget = ForensicAzure,
        };
        return (new DurableCaptureHub(DurableStorage, DurableHub, log, DurableTimings), steps, ledger);
    }

    /// <summary>
    /// The Step Functions workflow's steps (infra/aws/cloudmem-workflow.asl.json), when an S3 bucket and the
    /// DynamoDB table (its state) are configured; null otherwise.
    /// </summary>
    public AwsWorkflowSteps? BuildWorkflow(CaptureLog log)
    {
        if (Bucket is null || DedupeTable is null)
        {
            return null;
        }
        return new AwsWorkflowSteps(new TriggerPolicy { MinSeverity = MinSeverity, AllowedTypes = AllowedTypes }, AwsCommandSettings.ConnectionFor,
            DynamoCaptureLedger.Create(AwsCommandSettings.ConnectionFor(null), DedupeTable, log), Bucket, Prefix, ToolFile, CaptureCli.S3InPlaceOpener, log)
        {
            Timeouts = CaptureTimeouts.From(TimeoutMinutes, PollSeconds),
            OutputDirectory = Out,
            MinPartBytes = MinPartMiB is { } mib ? (long)mib << 20 : null,
            Signer = CaptureCli.Signer(SignKey, SignKmsKey, SignKeyVaultKey),
            Documents = Documents,
            DiskSnapshots = DiskSnapshots,
            ForensicAccount = ForensicAccount,
        };
    }

    /// <summary>Builds the responder; at least one target (bucket or container) must be configured.</summary>
    public AlertResponder Build(CaptureLog log)
    {
        var targets = new List<IResponderTarget>();
        if (Bucket is not null)
        {
            if (Bucket.Length is < 3 or > 63)
            {
                throw new CaptureException($"bucket '{Bucket}' must be 3-63 characters");
            }
            targets.Add(new AwsResponderTarget(AwsCommandSettings.ConnectionFor, Bucket, Prefix, ToolFile, CaptureCli.ParserOpener, MinPartMiB is { } mib ? (long)mib << 20 : null) { Documents = Documents });
        }
        if (ContainerUrl is not null)
        {
            Uri container = new(ContainerUrl);
            AzureTarget.ParseContainerUrl(container);
            targets.Add(new AzureResponderTarget(container, AzureCli.CredentialFactory, AzureCli.StorageKey(container, log.Scrubber), AzureCli.Arm(ArmEndpoint), ToolFile, ToolVersion, CaptureCli.ParserOpener));
        }
        if (targets.Count == 0)
        {
            throw new CaptureException("no evidence store: give an S3 bucket (--bucket / CLOUDMEM_BUCKET) or an Azure container (--container-url / CLOUDMEM_CONTAINER_URL)");
        }
        return new AlertResponder(new TriggerPolicy { MinSeverity = MinSeverity, AllowedTypes = AllowedTypes }, targets, log)
        {
            PlanOnly = PlanOnly,
            Download = Download,
            OutputDirectory = Out,
            Timeouts = CaptureTimeouts.From(TimeoutMinutes, PollSeconds),
            // The table is in the responder's own region (AWS_REGION), whatever the finding's.
            Ledger = DedupeTable is null ? null : DynamoCaptureLedger.Create(AwsCommandSettings.ConnectionFor(null), DedupeTable, log),
            Signer = CaptureCli.Signer(SignKey, SignKmsKey, SignKeyVaultKey),
        };
    }
}

/// <summary>cloudmem respond EVENT.json --bucket B | --container-url U [--min-severity N] [--plan]</summary>
[Description("Respond to a GuardDuty finding or Defender alert (JSON file): check the policy, then plan or capture the machine it names")]
internal sealed class RespondCommand : AsyncCommand<RespondCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<EVENT>")]
        [Description("Event JSON: GuardDuty finding (raw or EventBridge), Defender alert, Azure Monitor common alert, Event Grid event; '-' = stdin")]
        public string Event { get; init; } = "";

        [CommandOption("--bucket <BUCKET>")]
        [Description("S3 evidence bucket (GuardDuty findings)")]
        public string? Bucket { get; init; }

        [CommandOption("--prefix <PREFIX>")]
        [Description("Key prefix in the bucket")]
        [DefaultValue("cloudmem")]
        public string Prefix { get; init; } = "cloudmem";

        [CommandOption("--container-url <URL>")]
        [Description("Azure evidence container (Defender alerts)")]
        public string? ContainerUrl { get; init; }

        [CommandOption("--tool-file <FILE>")]
        [Description("Acquisition tool to stage (AVML/WinPmem)")]
        public string? ToolFile { get; init; }

        [CommandOption("--min-severity <N>")]
        [Description("Lowest severity that captures, GuardDuty scale (Defender: Low 2, Medium 5, High 8)")]
        [DefaultValue(TriggerPolicy.DefaultMinSeverity)]
        public double MinSeverity { get; init; } = TriggerPolicy.DefaultMinSeverity;

        [CommandOption("--allow <TYPES>")]
        [Description("Comma-separated finding/alert types allowed (trailing * = prefix); default: all")]
        public string? Allow { get; init; }

        [CommandOption("--plan")]
        [Description("Decide and plan only (read-only calls)")]
        public bool Plan { get; init; }

        [CommandOption("--download")]
        [Description("Keep a verified local copy of the image in --out")]
        public bool Download { get; init; }

        [CommandOption("--out <DIR>")]
        [Description("Manifests go to DIR/CASE_ID")]
        [DefaultValue(".")]
        public string Out { get; init; } = ".";

        [CommandOption("--timeout <MINUTES>")]
        [DefaultValue(120.0)]
        public double TimeoutMinutes { get; init; } = 120;

        [CommandOption("--poll <SECONDS>")]
        [DefaultValue(5.0)]
        public double PollSeconds { get; init; } = 5;

        [CommandOption("--arm-endpoint <URL>")]
        [Description("ARM endpoint (sovereign clouds or a test server)")]
        public string? ArmEndpoint { get; init; }

        [CommandOption("--sign-key <PRIVATE_KEY>")]
        [Description("Sign every manifest with this PEM ECDSA P-256 key (MANIFEST.sig)")]
        public string? SignKey { get; init; }

        [CommandOption("--dedupe-table <TABLE>")]
        [Description("DynamoDB table (key 'key', TTL 'expiresAt'): one capture per finding and instance, one capture per instance at a time")]
        public string? DedupeTable { get; init; }

        public override ValidationResult Validate()
        {
            if (Bucket is null && ContainerUrl is null)
            {
                return ValidationResult.Error("give --bucket (AWS) and/or --container-url (Azure)");
            }
            if (MinSeverity is < 0 or > 10 || TimeoutMinutes <= 0 || PollSeconds <= 0)
            {
                return ValidationResult.Error("--min-severity must be 0-10, --timeout and --poll positive");
            }
            return ValidationResult.Success();
        }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var log = new CaptureLog(new SecretScrubber(), Console.Error);
        AlertEvent alert = settings.Event == "-"
            ? await AlertEventParser.ParseAsync(Console.OpenStandardInput(), cancellationToken)
            : AlertEventParser.ParseFile(settings.Event);
        AlertResponder responder = new ResponderConfig
        {
            Bucket = settings.Bucket,
            Prefix = settings.Prefix,
            ContainerUrl = settings.ContainerUrl,
            ToolFile = settings.ToolFile,
            ArmEndpoint = settings.ArmEndpoint,
            MinSeverity = settings.MinSeverity,
            AllowedTypes = TriggerPolicy.ParseAllowList(settings.Allow),
            PlanOnly = settings.Plan,
            Download = settings.Download,
            Out = settings.Out,
            TimeoutMinutes = settings.TimeoutMinutes,
            PollSeconds = settings.PollSeconds,
            DedupeTable = settings.DedupeTable,
            SignKey = settings.SignKey,
        }.Build(log);
        ResponseOutcome outcome = await responder.RespondAsync(alert, cancellationToken);
        Console.Out.WriteLine(outcome.Reason);
        if (outcome.Plan is not null)
        {
            Console.Out.Write(outcome.Plan);
        }
        if (outcome.Manifest is not null)
        {
            Console.Out.WriteLine($"manifest: {outcome.Manifest}");
            foreach (string evidence in outcome.Evidence ?? [])
            {
                Console.Out.WriteLine($"evidence: {evidence}");
            }
        }
        // Refused is a decision, not a failure; a plan that is not ready is.
        return outcome.Ready == false ? (int)ExitCode.Error : (int)ExitCode.Ok;
    }
}

/// <summary>cloudmem lambda: the Lambda custom runtime loop (provided.al2023; bootstrap runs this).</summary>
[Description("Run as an AWS Lambda custom runtime (AWS_LAMBDA_RUNTIME_API): each GuardDuty event -> policy -> capture, or one step of the Step Functions workflow; configuration from CLOUDMEM_* variables")]
internal sealed class LambdaCommand : AsyncCommand<LambdaCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandOption("--max-invocations <N>")]
        [Description("Stop after N invocations (tests); default: serve until the sandbox stops")]
        public int? MaxInvocations { get; init; }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var log = new CaptureLog(new SecretScrubber(), Console.Error);
        using var http = new HttpClient { Timeout = Timeout.InfiniteTimeSpan };
        var loop = new LambdaRuntimeLoop(http, Environment.GetEnvironmentVariable("AWS_LAMBDA_RUNTIME_API") ?? "", log);
        AlertResponder responder;
        AwsWorkflowSteps? workflow;
        try
        {
            ResponderConfig config = ResponderConfig.FromEnvironment("/tmp/cloudmem");
            responder = config.Build(log);
            workflow = config.BuildWorkflow(log);
        }
        catch (Exception e) when (e is CaptureException or UriFormatException or ArgumentException)
        {
            await loop.ReportInitErrorAsync(e, cancellationToken);
            throw;
        }
        int handled = await loop.RunAsync(async (invocation, token) =>
        {
            // A Step Functions task ({"step", "event", "execution"}) runs one workflow step; anything else is an event.
            if (WorkflowInput.TryParse(invocation.Payload) is { } step)
            {
                AwsWorkflowSteps steps = workflow ?? throw new CaptureException("a workflow step needs CLOUDMEM_BUCKET and CLOUDMEM_DEDUPE_TABLE (the workflow's state)");
                // The invocation's deadline bounds the step: finalize's read-back checkpoints before it and returns.
                return (await steps.RunAsync(step, token, invocation.Deadline)).ToJson();
            }
            ResponseOutcome outcome = await responder.RespondAsync(invocation.Payload, token);
            return outcome.ToJson();
        }, settings.MaxInvocations, cancellationToken);
        log.Info($"{handled} invocation(s) handled");
        return (int)ExitCode.Ok;
    }
}

/// <summary>cloudmem serve-function: the Azure Functions custom handler.</summary>
[Description("Run as an Azure Functions custom handler on FUNCTIONS_CUSTOMHANDLER_PORT: each Defender alert (Event Grid or HTTP trigger) -> policy -> capture, or, with CLOUDMEM_DURABLE_STORAGE, -> start of the durable workflow (answered at once)")]
internal sealed class ServeFunctionCommand : AsyncCommand<ServeFunctionCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandOption("--port <PORT>")]
        [Description("Port (default: FUNCTIONS_CUSTOMHANDLER_PORT)")]
        public int? Port { get; init; }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var log = new CaptureLog(new SecretScrubber(), Console.Error);
        int port = settings.Port ?? (int.TryParse(Environment.GetEnvironmentVariable("FUNCTIONS_CUSTOMHANDLER_PORT"), NumberStyles.None, CultureInfo.InvariantCulture, out int p)
            ? p : throw new CaptureException("FUNCTIONS_CUSTOMHANDLER_PORT is not set (is this running under the Functions host?) and no --port"));
        ResponderConfig config = ResponderConfig.FromEnvironment(Path.Combine(Path.GetTempPath(), "cloudmem"));
        Func<ReadOnlyMemory<byte>, CancellationToken, Task<ResponseOutcome>> respond;
        if (config.BuildDurable(log) is var (hub, _, ledger))
        {
            // Durable mode: validate the alert and start the orchestration, answering at once (the worker captures).
            await ledger.CreateIfNotExistsAsync(cancellationToken);
            var policy = new TriggerPolicy { MinSeverity = config.MinSeverity, AllowedTypes = config.AllowedTypes };
            TimeSpan poll = TimeSpan.FromSeconds(Math.Max(config.PollSeconds, 30));
            respond = (body, token) => hub.RespondAsync(body, policy, poll, ledger, token);
        }
        else
        {
            respond = config.Build(log).RespondAsync;
        }
        await using var server = new FunctionHandlerServer(port, respond, log);
        await server.RunAsync(cancellationToken);
        return (int)ExitCode.Ok;
    }
}

/// <summary>cloudmem durable-worker: the long-running Azure worker of the durable capture workflow.</summary>
[Description("Run the Azure durable capture worker (Durable Task Framework on Azure Storage: CLOUDMEM_DURABLE_STORAGE) until stopped; configuration from CLOUDMEM_* variables")]
internal sealed class DurableWorkerCommand : AsyncCommand<DurableWorkerCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var log = new CaptureLog(new SecretScrubber(), Console.Error);
        ResponderConfig config = ResponderConfig.FromEnvironment(Path.Combine(Path.GetTempPath(), "cloudmem"));
        (DurableCaptureHub hub, AzureWorkflowSteps steps, TableCaptureLedger ledger) = config.BuildDurable(log)
            ?? throw new CaptureException("the durable worker needs CLOUDMEM_DURABLE_STORAGE (the task hub's storage connection string) and CLOUDMEM_CONTAINER_URL");
        await ledger.CreateIfNotExistsAsync(cancellationToken);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using PosixSignalRegistration term = PosixSignalRegistration.Create(PosixSignal.SIGTERM, signal =>
        {
            signal.Cancel = true;
            stop.Cancel();
        });
        await hub.RunWorkerAsync(steps, stop.Token);
        return (int)ExitCode.Ok;
    }
}

/// <summary>cloudmem workflow-step: one AWS workflow step in a container (the Fargate task of the state machine).</summary>
[Description("Run one step of the AWS capture workflow from CLOUDMEM_WORKFLOW_STEP, CLOUDMEM_WORKFLOW_EVENT and CLOUDMEM_WORKFLOW_EXECUTION (the Fargate task that continues a finalize step longer than Lambda's 15 minutes); configuration from CLOUDMEM_* variables")]
internal sealed class WorkflowStepCommand : AsyncCommand<WorkflowStepCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var log = new CaptureLog(new SecretScrubber(), Console.Error);
        static string Required(string name) => Environment.GetEnvironmentVariable(name) is { Length: > 0 } value
            ? value : throw new CaptureException($"{name} is not set (the state machine's container overrides set it)");
        ResponderConfig config = ResponderConfig.FromEnvironment(Path.Combine(Path.GetTempPath(), "cloudmem"));
        AwsWorkflowSteps steps = config.BuildWorkflow(log)
            ?? throw new CaptureException("a workflow step needs CLOUDMEM_BUCKET and CLOUDMEM_DEDUPE_TABLE (the workflow's state)");
        var payload = new System.Text.Json.Nodes.JsonObject
        {
            ["step"] = Required("CLOUDMEM_WORKFLOW_STEP"),
            ["event"] = ParseEvent(Required("CLOUDMEM_WORKFLOW_EVENT")),
            ["execution"] = Required("CLOUDMEM_WORKFLOW_EXECUTION"),
        };
        WorkflowInput input = WorkflowInput.TryParse(System.Text.Encoding.UTF8.GetBytes(payload.ToJsonString()))
            ?? throw new CaptureException("CLOUDMEM_WORKFLOW_* do not make a workflow step");
        WorkflowResult result = await steps.RunAsync(input, cancellationToken);
        Console.Out.WriteLine(result.ToJson());
        return (int)ExitCode.Ok;
    }

    private static System.Text.Json.Nodes.JsonNode? ParseEvent(string text)
    {
        try
        {
            return System.Text.Json.Nodes.JsonNode.Parse(text);
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new CaptureException($"CLOUDMEM_WORKFLOW_EVENT is not JSON: {CaptureException.OneLine(e.Message)}", e);
        }
    }
}
