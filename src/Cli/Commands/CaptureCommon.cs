using System.ComponentModel;
using System.Globalization;
using CloudMem.Connectors.Core;
using CloudMem.VmStateParsers;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Settings every capture and isolate command has (provider commands add their own).</summary>
internal class CaptureCommandSettings : CommandSettings
{
    [CommandOption("--case-id <ID>")]
    [Description("Case id: recorded in the manifest, used in object names and tags")]
    public string? CaseId { get; init; }

    [CommandOption("--trigger <TRIGGER>")]
    [Description("Why: manual (default), guardduty:FINDING_ID or defender:ALERT_ID")]
    public string? Trigger { get; init; }

    [CommandOption("--out <DIR>")]
    [Description("Directory for the custody manifest (and --download copies); default: current directory")]
    [DefaultValue(".")]
    public string Out { get; init; } = ".";

    [CommandOption("--plan")]
    [Description("Run the preflight checks and print the steps (and guest script) without changing anything")]
    public bool Plan { get; init; }

    [CommandOption("--timeout <MINUTES>")]
    [Description("Longest wait for the guest command or a provider operation, in minutes")]
    [DefaultValue(120.0)]
    public double TimeoutMinutes { get; init; } = 120;

    [CommandOption("--poll <SECONDS>")]
    [Description("Seconds between status polls")]
    [DefaultValue(5.0)]
    public double PollSeconds { get; init; } = 5;

    [CommandOption("--log <FILE>")]
    [Description("Also append the (secret-scrubbed) connector log to this file")]
    public string? LogFile { get; init; }

    [CommandOption("--sign-key <PRIVATE_KEY>")]
    [Description("Sign every manifest written with this PEM ECDSA P-256 key (MANIFEST.sig; cloudmem custody keygen/verify)")]
    public string? SignKey { get; init; }

    [CommandOption("--sign-kms-key <KEY>")]
    [Description("Sign every manifest with this AWS KMS key (ECC_NIST_P256, SIGN_VERIFY; id, ARN or alias; AWS default credentials)")]
    public string? SignKmsKey { get; init; }

    [CommandOption("--sign-keyvault-key <KEY_URL>")]
    [Description("Sign every manifest with this Azure Key Vault key (https://VAULT.vault.azure.net/keys/NAME[[/VERSION]]; EC P-256 -> ES256, RSA -> PS256; default Azure credential)")]
    public string? SignKeyVaultKey { get; init; }

    public override ValidationResult Validate()
    {
        if (TimeoutMinutes <= 0 || PollSeconds <= 0)
        {
            return ValidationResult.Error("--timeout and --poll must be positive");
        }
        if ((SignKey is not null ? 1 : 0) + (SignKmsKey is not null ? 1 : 0) + (SignKeyVaultKey is not null ? 1 : 0) > 1)
        {
            return ValidationResult.Error("give one of --sign-key, --sign-kms-key, --sign-keyvault-key");
        }
        try
        {
            CaptureRequest.ValidateCaseId(CaseId);
            CaptureTrigger.Parse(Trigger);
        }
        catch (CaptureException e)
        {
            return ValidationResult.Error(e.Message);
        }
        return ValidationResult.Success();
    }

    /// <summary>The provider-neutral request.</summary>
    public CaptureRequest ToRequest(bool download = false) => new()
    {
        CaseId = CaptureRequest.ValidateCaseId(CaseId),
        Trigger = CaptureTrigger.Parse(Trigger),
        OutputDirectory = Out,
        PlanOnly = Plan,
        Download = download,
        Timeouts = CaptureTimeouts.From(TimeoutMinutes, PollSeconds),
        Signer = CaptureCli.Signer(SignKey, SignKmsKey, SignKeyVaultKey),
    };
}

/// <summary>What capture commands share: the log, the evidence opener, printing plans and results.</summary>
internal static class CaptureCli
{
    /// <summary>The manifest signer: a local key file, an AWS KMS key (region and endpoint as for capture aws), an Azure Key Vault key, or none.</summary>
    public static IManifestSigner? Signer(string? keyFile, string? kmsKey, string? keyVaultKey = null)
        => keyFile is not null ? LocalKeySigner.Load(keyFile)
            : kmsKey is not null ? CloudMem.Connectors.Aws.KmsManifestSigner.Create(AwsCommandSettings.ConnectionFor(null), kmsKey)
            : keyVaultKey is not null ? AzureCli.KeyVaultSigner(keyVaultKey)
            : null;

    /// <summary>Opens evidence with our parsers (content detection) and returns the format name.</summary>
    public static readonly EvidenceOpener ParserOpener = path =>
    {
        using RunMappedMemory memory = CaptureOpener.Open(path);
        return memory.Metadata.Format;
    };

    /// <summary>
    /// Opens an S3 object with our parsers in place, through the caller's client (ranged reads, no local copy), and
    /// returns the format name: the AWS workflow's finalize, whose read-back keeps no copy between steps.
    /// </summary>
    public static readonly CloudMem.Connectors.Aws.S3EvidenceOpener S3InPlaceOpener = (s3, bucket, key) =>
    {
        var reader = CloudMem.RemoteCaptures.S3RangeReader.OpenAsync(s3, ownsClient: false, bucket, key, CancellationToken.None).GetAwaiter().GetResult();
        using RunMappedMemory memory = CaptureOpener.Open(reader);
        return memory.Metadata.Format;
    };

    /// <summary>A scrubbing log to stderr (and the --log file). Dispose the returned file writer, if any.</summary>
    public static CaptureLog CreateLog(SecretScrubber scrubber, string? logFile, out StreamWriter? file)
    {
        file = logFile is null ? null : new StreamWriter(logFile, append: true);
        return file is null ? new CaptureLog(scrubber, Console.Error) : new CaptureLog(scrubber, Console.Error, file);
    }

    /// <summary>
    /// <c>--plan</c>: prints the plan (exit 0 when ready, else 2); otherwise runs the capture and prints its outcome.
    /// </summary>
    public static async Task<int> PlanOrCaptureAsync(ICaptureConnector connector, bool planOnly, SecretScrubber scrubber, CancellationToken cancellationToken)
    {
        if (planOnly)
        {
            CapturePlan plan = await connector.PlanAsync(cancellationToken).ConfigureAwait(false);
            Console.Out.Write(plan.ToText(scrubber));
            return plan.Ready ? (int)ExitCode.Ok : (int)ExitCode.Error;
        }
        PrintResult(await connector.CaptureAsync(cancellationToken).ConfigureAwait(false));
        return (int)ExitCode.Ok;
    }

    /// <summary>Prints the outcome of a capture, and a warning for every clean-up step that failed.</summary>
    public static void PrintResult(CaptureResult result)
    {
        Console.Out.WriteLine($"status: {result.Manifest.Status}");
        Console.Out.WriteLine($"manifest: {result.ManifestPath}");
        foreach (EvidenceRecord evidence in result.Manifest.Evidence)
        {
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"evidence: {evidence.Uri} {evidence.SizeBytes} bytes sha256 {evidence.Sha256} opens as {evidence.OpenedAs ?? "-"}{(evidence.LocalPath is null ? "" : " local " + evidence.LocalPath)}"));
        }
        foreach (StepRecord step in result.Manifest.Steps.Where(s => s.Action == "cleanup FAILED"))
        {
            Console.Error.WriteLine($"cloudmem: warning: {step.Detail}");
        }
    }
}
