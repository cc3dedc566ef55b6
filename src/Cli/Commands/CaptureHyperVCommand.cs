using System.ComponentModel;
using System.Net;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.HyperV;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary><c>cloudmem capture hyperv VMNAME --host HOST</c>: standard checkpoint or Save-VM over PowerShell remoting.</summary>
[Description("Standard checkpoint or Save-VM of a Hyper-V VM over PowerShell remoting, copied and verified, with a custody manifest")]
internal sealed class CaptureHyperVCommand : AsyncCommand<CaptureHyperVCommand.Settings>
{
    internal sealed class Settings : CaptureCommandSettings
    {
        [CommandArgument(0, "<VMNAME>")]
        [Description("VM name on the Hyper-V host")]
        public string VmName { get; init; } = "";

        [CommandOption("--host <HOST>")]
        [Description("Hyper-V host (WinRM); localhost on Windows runs locally")]
        public string? Host { get; init; }

        [CommandOption("--method <checkpoint|save>")]
        [Description("checkpoint (default): standard checkpoint, VM keeps running; save: Save-VM then Start-VM")]
        [DefaultValue("checkpoint")]
        public string Method { get; init; } = "checkpoint";

        [CommandOption("--use-ssl")]
        [Description("WinRM over HTTPS (port 5986)")]
        public bool UseSsl { get; init; }

        public override ValidationResult Validate()
        {
            ValidationResult common = base.Validate();
            if (!common.Successful)
            {
                return common;
            }
            if (string.IsNullOrWhiteSpace(Host))
            {
                return ValidationResult.Error("--host is required");
            }
            return Method is "checkpoint" or "save" ? ValidationResult.Success() : ValidationResult.Error("--method must be checkpoint or save");
        }
    }

    /// <summary>Environment variables for explicit credentials (else the current Kerberos/NTLM identity).</summary>
    public const string UserVariable = "CLOUDMEM_HYPERV_USER";

    /// <inheritdoc cref="UserVariable"/>
    public const string PasswordVariable = "CLOUDMEM_HYPERV_PASSWORD";

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var scrubber = new SecretScrubber();
        NetworkCredential? credential = Environment.GetEnvironmentVariable(UserVariable) is { Length: > 0 } user
            ? new NetworkCredential(user, Environment.GetEnvironmentVariable(PasswordVariable) ?? "")
            : null;
        scrubber.Register(credential?.Password);
        CaptureLog log = CaptureCli.CreateLog(scrubber, settings.LogFile, out StreamWriter? logFile);
        try
        {
            await using var shell = new PwshRemotePowerShell(settings.Host!, settings.UseSsl, credential);
            var options = new HyperVCaptureOptions
            {
                VmName = settings.VmName,
                Host = settings.Host!,
                Method = settings.Method == "save" ? HyperVMethod.Save : HyperVMethod.Checkpoint,
            };
            var capture = new HyperVCapture(options, shell, settings.ToRequest(download: true), log, CaptureCli.ParserOpener);
            return await CaptureCli.PlanOrCaptureAsync(capture, settings.Plan, scrubber, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            logFile?.Dispose();
        }
    }
}
