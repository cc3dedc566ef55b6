using System.ComponentModel;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using CloudMem.Connectors.Core;
using CloudMem.Connectors.VSphere;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary><c>cloudmem capture vsphere VM --server https://vc</c>: memory snapshot, download, verify, remove.</summary>
[Description("Memory snapshot of a vSphere VM (vCenter/ESXi), downloaded, verified and removed, with a custody manifest")]
internal sealed class CaptureVSphereCommand : AsyncCommand<CaptureVSphereCommand.Settings>
{
    internal sealed class Settings : CaptureCommandSettings
    {
        [CommandArgument(0, "<VM>")]
        [Description("VM moref (vm-42), inventory path (DC/vm/folder/name) or name")]
        public string Vm { get; init; } = "";

        [CommandOption("--server <URL>")]
        [Description("vCenter or ESXi URL, e.g. https://vc.example.org")]
        public string? Server { get; init; }

        [CommandOption("--insecure-thumbprint <SHA256>")]
        [Description("Accept the server certificate only if its SHA-256 thumbprint is this (self-signed hosts)")]
        public string? Thumbprint { get; init; }

        [CommandOption("--datacenter <DC>")]
        [Description("Datacenter of a VM given by name (default: the only one)")]
        public string? Datacenter { get; init; }

        [CommandOption("--keep-snapshot")]
        [Description("Leave the memory snapshot on the server")]
        public bool KeepSnapshot { get; init; }

        [CommandOption("--transport <auto|vi-json|soap>")]
        [Description("Wire protocol: VI/JSON (vCenter 8.0U1+), SOAP (/sdk), or auto (VI/JSON when answered)")]
        [DefaultValue("auto")]
        public string Transport { get; init; } = "auto";

        [CommandOption("--api-release <RELEASE>")]
        [Description("VI/JSON release in URLs (default 8.0.1.0)")]
        public string? ApiRelease { get; init; }

        [CommandOption("--verify <remote|local>")]
        [Description("remote (default): read the datastore files again and compare hashes; local: re-hash the local copies only")]
        [DefaultValue("remote")]
        public string Verify { get; init; } = "remote";

        [CommandOption("--cleanup-timeout <MINUTES>")]
        [Description("Longest wait for the snapshot removal, in minutes (applies after failures too)")]
        [DefaultValue(10.0)]
        public double CleanupMinutes { get; init; } = 10;

        public override ValidationResult Validate()
        {
            ValidationResult common = base.Validate();
            if (!common.Successful)
            {
                return common;
            }
            if (Server is null || !Uri.TryCreate(Server, UriKind.Absolute, out Uri? uri) || uri.Scheme is not ("https" or "http"))
            {
                return ValidationResult.Error("--server must be an http(s) URL of the vCenter or ESXi host");
            }
            if (ParseTransport(Transport) is null)
            {
                return ValidationResult.Error("--transport must be auto, vi-json or soap");
            }
            if (Verify is not ("remote" or "local"))
            {
                return ValidationResult.Error("--verify must be remote or local");
            }
            if (CleanupMinutes <= 0)
            {
                return ValidationResult.Error("--cleanup-timeout must be positive");
            }
            if (Thumbprint is not null)
            {
                try
                {
                    VSphereHttp.NormalizeThumbprint(Thumbprint);
                }
                catch (CaptureException e)
                {
                    return ValidationResult.Error(e.Message);
                }
            }
            return ValidationResult.Success();
        }

        internal static VSphereTransport? ParseTransport(string text) => text switch
        {
            "auto" => VSphereTransport.Auto,
            "vi-json" => VSphereTransport.ViJson,
            "soap" => VSphereTransport.Soap,
            _ => null,
        };
    }

    /// <summary>Environment variables the credentials come from.</summary>
    public const string UserVariable = "CLOUDMEM_VSPHERE_USER";

    /// <inheritdoc cref="UserVariable"/>
    public const string PasswordVariable = "CLOUDMEM_VSPHERE_PASSWORD";

    public override async Task<int> ExecuteAsync(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var scrubber = new SecretScrubber();
        NetworkCredential credential = ReadCredential();
        scrubber.Register(credential.Password);
        CaptureLog log = CaptureCli.CreateLog(scrubber, settings.LogFile, out StreamWriter? logFile);
        try
        {
            var options = new VSphereCaptureOptions
            {
                Server = new Uri(settings.Server!),
                Vm = settings.Vm,
                Datacenter = settings.Datacenter,
                PinnedThumbprint = settings.Thumbprint,
                KeepSnapshot = settings.KeepSnapshot,
                Transport = Settings.ParseTransport(settings.Transport)!.Value,
                ApiRelease = settings.ApiRelease,
                Verify = settings.Verify == "local" ? VSphereVerify.Local : VSphereVerify.Remote,
                CleanupTimeout = TimeSpan.FromMinutes(settings.CleanupMinutes),
            };
            var capture = new VSphereCapture(options, credential, settings.ToRequest(download: true), log, CaptureCli.ParserOpener, progress: new StderrProgress(log));
            return await CaptureCli.PlanOrCaptureAsync(capture, settings.Plan, scrubber, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            logFile?.Dispose();
        }
    }

    /// <summary>User and password from the environment, else asked on the terminal (the password is not echoed).</summary>
    private static NetworkCredential ReadCredential()
    {
        string? user = Environment.GetEnvironmentVariable(UserVariable);
        string? password = Environment.GetEnvironmentVariable(PasswordVariable);
        if (!string.IsNullOrEmpty(user) && password is not null)
        {
            return new NetworkCredential(user, password);
        }
        if (Console.IsInputRedirected)
        {
            throw new CaptureException($"no vSphere credentials: set {UserVariable} and {PasswordVariable} (no terminal to ask on)");
        }
        user = string.IsNullOrEmpty(user) ? AnsiConsole.Prompt(new TextPrompt<string>("vSphere user:")) : user;
        password ??= AnsiConsole.Prompt(new TextPrompt<string>($"Password for {user}:").Secret());
        return new NetworkCredential(user, password);
    }

    /// <summary>A progress line on the log every 5 s and at the end of each file.</summary>
    private sealed class StderrProgress(CaptureLog log) : IProgress<TransferProgress>
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();
        private TimeSpan _last = TimeSpan.Zero;

        public void Report(TransferProgress value)
        {
            bool done = value.Total is not null && value.Bytes == value.Total;
            if (!done && _clock.Elapsed - _last < TimeSpan.FromSeconds(5))
            {
                return;
            }
            _last = _clock.Elapsed;
            string of = value.Total is { } total && total > 0
                ? string.Create(CultureInfo.InvariantCulture, $" of {total / 1048576.0:0.0} MiB ({100.0 * value.Bytes / total:0}%)")
                : "";
            log.Info(string.Create(CultureInfo.InvariantCulture, $"download {value.File}: {value.Bytes / 1048576.0:0.0} MiB{of}"));
        }
    }
}
