using System.ComponentModel;
using Azure.Core;
using Azure.Core.Pipeline;
using Azure.Identity;
using Azure.Storage;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Credentials and endpoints of the Azure commands (tests replace the factories in process).</summary>
internal static class AzureCli
{
    /// <summary>The ARM (and user-delegation) credential: DefaultAzureCredential unless a test set another.</summary>
    internal static Func<TokenCredential> CredentialFactory { get; set; } = () => new DefaultAzureCredential();

    /// <summary>The ARM transport (null = the SDK's); tests trust their own certificate through it.</summary>
    internal static Func<HttpPipelineTransport?> ArmTransportFactory { get; set; } = () => null;

    /// <summary>Name of the environment variable holding a storage account key (emulators, legacy accounts).</summary>
    public const string StorageKeyVariable = "AZURE_STORAGE_KEY";

    /// <summary>A Key Vault key as manifest signer (or, for verify, the source of the trusted public key).</summary>
    public static KeyVaultManifestSigner KeyVaultSigner(string keyUrl)
    {
        if (!Uri.TryCreate(keyUrl, UriKind.Absolute, out Uri? uri))
        {
            throw new CaptureException($"Key Vault key '{keyUrl}' is not a URL (https://VAULT.vault.azure.net/keys/NAME or .../NAME/VERSION)");
        }
        return KeyVaultManifestSigner.Create(CredentialFactory(), new KeyVaultKeySettings(uri, Transport: ArmTransportFactory()));
    }

    public static AzureArmSettings Arm(string? endpoint) => new(
        endpoint is null ? null : new Uri(endpoint),
        endpoint is null ? null : "https://management.azure.com",
        ArmTransportFactory());

    /// <summary>A storage account key from the environment (never from the command line), or null.</summary>
    public static StorageSharedKeyCredential? StorageKey(Uri containerUrl, SecretScrubber scrubber)
    {
        string? key = Environment.GetEnvironmentVariable(StorageKeyVariable);
        if (string.IsNullOrEmpty(key))
        {
            return null;
        }
        scrubber.Register(key);
        return new StorageSharedKeyCredential(AzureTarget.ParseContainerUrl(containerUrl).Account, key);
    }
}

/// <summary>cloudmem capture azure VM_ID --container-url URL ...</summary>
[Description("Capture the memory of an Azure VM into a Blob container (Run Command + AVML/WinPmem, or hibernation) with a custody manifest")]
internal sealed class CaptureAzureCommand : AsyncCommand<CaptureAzureCommand.Settings>
{
    internal sealed class Settings : CaptureCommandSettings
    {
        [CommandArgument(0, "<VM_ID>")]
        [Description("Full ARM id: /subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/NAME")]
        public string VmId { get; init; } = "";

        [CommandOption("--container-url <URL>")]
        [Description("Evidence container, https://ACCOUNT.blob.core.windows.net/CONTAINER (no SAS: the credential comes from DefaultAzureCredential, or AZURE_STORAGE_KEY)")]
        public string? ContainerUrl { get; init; }

        [CommandOption("--tool <TOOL>")]
        [Description("avml (Linux) or winpmem (Windows); default from the VM's OS type")]
        public string? Tool { get; init; }

        [CommandOption("--tool-file <FILE>")]
        [Description("The tool binary to stage in the container (the guest checks its SHA-256 before running it)")]
        public string? ToolFile { get; init; }

        [CommandOption("--tool-version <VERSION>")]
        [Description("Tool version, recorded in the manifest")]
        public string? ToolVersion { get; init; }

        [CommandOption("--method <METHOD>")]
        [Description("runcommand (default) or hibernate (opt-in: deallocate with hibernate=true, OS disk snapshot read back through Grant Access, hibernation image opened; needs hibernation enabled)")]
        [DefaultValue("runcommand")]
        public string Method { get; init; } = "runcommand";

        [CommandOption("--download")]
        [Description("Keep the verified copy of the image in --out (it is always streamed back and hashed)")]
        public bool Download { get; init; }

        [CommandOption("--arm-endpoint <URL>")]
        [Description("ARM endpoint (default https://management.azure.com; sovereign clouds or a test server)")]
        public string? ArmEndpoint { get; init; }

        public override ValidationResult Validate()
        {
            ValidationResult common = base.Validate();
            if (!common.Successful)
            {
                return common;
            }
            try
            {
                AzureTarget.ParseVmId(VmId);
                if (Method is not ("runcommand" or "hibernate"))
                {
                    return ValidationResult.Error($"--method must be runcommand or hibernate, not '{Method}'");
                }
                if (Tool is not (null or "avml" or "winpmem"))
                {
                    return ValidationResult.Error($"--tool must be avml or winpmem, not '{Tool}'");
                }
                if (Method == "runcommand")
                {
                    if (ContainerUrl is null)
                    {
                        return ValidationResult.Error("--container-url is required");
                    }
                    AzureTarget.ParseContainerUrl(new Uri(ContainerUrl));
                }
                if (ArmEndpoint is not null && !ArmEndpoint.StartsWith("https://", StringComparison.Ordinal))
                {
                    return ValidationResult.Error("--arm-endpoint must be an https URL");
                }
            }
            catch (Exception e) when (e is ArgumentException or UriFormatException)
            {
                return ValidationResult.Error(e.Message);
            }
            return ValidationResult.Success();
        }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var scrubber = new SecretScrubber();
        CaptureLog log = CaptureCli.CreateLog(scrubber, settings.LogFile, out StreamWriter? logFile);
        await using (logFile)
        {
            Uri container = new(settings.ContainerUrl ?? "https://unused.blob.core.windows.net/unused");
            var options = new AzureCaptureOptions
            {
                VmId = AzureTarget.ParseVmId(settings.VmId),
                ContainerUrl = container,
                Credential = AzureCli.CredentialFactory(),
                StorageKey = AzureCli.StorageKey(container, scrubber),
                Arm = AzureCli.Arm(settings.ArmEndpoint),
                Tool = settings.Tool switch { "avml" => AzureGuestTool.Avml, "winpmem" => AzureGuestTool.WinPmem, _ => null },
                ToolFile = settings.ToolFile,
                ToolVersion = settings.ToolVersion,
                Method = settings.Method == "hibernate" ? AzureCaptureMethod.Hibernate : AzureCaptureMethod.RunCommand,
            };
            var connector = new AzureCaptureConnector(options, settings.ToRequest(settings.Download), log, CaptureCli.ParserOpener);
            return await CaptureCli.PlanOrCaptureAsync(connector, settings.Plan, scrubber, cancellationToken);
        }
    }
}

/// <summary>cloudmem isolate azure VM_ID --nsg NSG_ID [--plan]</summary>
[Description("Isolate an Azure VM: an isolation NSG on every network interface, the previous NSGs recorded")]
internal sealed class IsolateAzureCommand : AsyncCommand<IsolateAzureCommand.Settings>
{
    internal sealed class Settings : CaptureCommandSettings
    {
        [CommandArgument(0, "<VM_ID>")]
        [Description("Full ARM id of the VM")]
        public string VmId { get; init; } = "";

        [CommandOption("--nsg <NSG_ID>")]
        [Description("Full ARM id of the isolation network security group (same region as the VM)")]
        public string? Nsg { get; init; }

        [CommandOption("--arm-endpoint <URL>")]
        [Description("ARM endpoint (default https://management.azure.com)")]
        public string? ArmEndpoint { get; init; }

        [CommandOption("--remove-public-ips")]
        [Description("Also detach the public IP of every NIC IP configuration (recorded in the manifest for restore)")]
        public bool RemovePublicIps { get; init; }

        [CommandOption("--remove-identity")]
        [Description("Also remove the VM's managed identities (identity type None; recorded in the manifest)")]
        public bool RemoveIdentity { get; init; }

        public override ValidationResult Validate()
        {
            ValidationResult common = base.Validate();
            if (!common.Successful)
            {
                return common;
            }
            try
            {
                AzureTarget.ParseVmId(VmId);
                if (Nsg is null)
                {
                    return ValidationResult.Error("--nsg is required");
                }
                AzureTarget.ParseNsgId(Nsg);
            }
            catch (ArgumentException e)
            {
                return ValidationResult.Error(e.Message);
            }
            return ValidationResult.Success();
        }
    }

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var scrubber = new SecretScrubber();
        CaptureLog log = CaptureCli.CreateLog(scrubber, settings.LogFile, out StreamWriter? logFile);
        await using (logFile)
        {
            var isolator = new AzureIsolator(AzureTarget.ParseVmId(settings.VmId), AzureTarget.ParseNsgId(settings.Nsg!),
                AzureCli.CredentialFactory(), AzureCli.Arm(settings.ArmEndpoint), settings.ToRequest(), log,
                new AzureIsolationExtras(settings.RemovePublicIps, settings.RemoveIdentity));
            if (settings.Plan)
            {
                CapturePlan plan = await isolator.PlanAsync(cancellationToken);
                Console.Out.Write(plan.ToText(scrubber));
                return plan.Ready ? (int)ExitCode.Ok : (int)ExitCode.Error;
            }
            CaptureResult result = await isolator.IsolateAsync(cancellationToken);
            Console.Out.WriteLine($"status: {result.Manifest.Status}");
            Console.Out.WriteLine($"manifest: {result.ManifestPath}");
            foreach (ResourceRecord resource in result.Manifest.Resources)
            {
                Console.Out.WriteLine($"{resource.Kind}: {resource.Id}: {resource.Detail}");
            }
            return (int)ExitCode.Ok;
        }
    }
}
