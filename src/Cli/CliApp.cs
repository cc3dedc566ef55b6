using CloudMem.Engine.Core;
using System.Reflection;
using CloudMem.Cli.Commands;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Writing;
using Spectre.Console.Cli;

namespace CloudMem.Cli;

/// <summary>The command line: commands are registered here; errors become one line on stderr and exit code 2.</summary>
internal static class CliApp
{
    public static int Run(string[] args, TextWriter? error = null)
    {
        error ??= Console.Error;
        var index = new CommandIndex();
        index.AddPlugins();
        var app = new CommandApp();
        app.Configure(config =>
        {
            config.SetApplicationName("cloudmem");
            config.SetInterceptor(new CaptureStatsInterceptor());
            // A plugin command registers only its own plugin with Spectre, and none of the other commands: building the
            // command model reflects over every registered command's settings, which cost more CPU than a warm
            // windows.pslist itself (the index above knows every plugin, for usage checks and help).
            string? onlyPlugin = args is [var first, ..] && PluginRegistry.All.Any(p => p.Info.Name == first) ? first : null;
            foreach (IPlugin plugin in PluginRegistry.All.Where(p => onlyPlugin is null || p.Info.Name == onlyPlugin))
            {
                ICommandConfigurator command = plugin.Info.Os == TargetOs.Windows
                    ? config.AddCommand<PluginCommand<WindowsPluginSettings>>(plugin.Info.Name)
                    : config.AddCommand<PluginCommand<LinuxPluginSettings>>(plugin.Info.Name);
                command.WithDescription(Spectre.Console.Markup.Escape(plugin.Info.Description));
            }
            if (onlyPlugin is null)
            {
                Configure(config, index);
            }
            config.SetExceptionHandler((exception, _) =>
            {
                error.WriteLine($"cloudmem: {Describe(exception)}");
                return exception is OperationCanceledException ? (int)ExitCode.Cancelled : (int)ExitCode.Error;
            });
        });
        if (args.Length == 0 || args is ["-h" or "--help"])
        {
            TextWriter help = args.Length == 0 ? error : Console.Out;
            index.WriteHelp(help, Version);
            return args.Length == 0 ? (int)ExitCode.Error : (int)ExitCode.Ok;
        }
        if (args is ["--version"])
        {
            Console.Out.WriteLine($"cloudmem {Version}");
            return (int)ExitCode.Ok;
        }
        if (index.Check(args) is { } usage)
        {
            error.WriteLine($"cloudmem: usage: {usage} (see cloudmem {(usage.StartsWith("unknown command", StringComparison.Ordinal) ? "" : args[0] + " ")}--help)");
            return (int)ExitCode.Error;
        }
        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler handler = (_, e) =>
        {
            e.Cancel = true;
            cancel.Cancel();
        };
        Console.CancelKeyPress += handler;
        try
        {
            return app.Run(args, cancel.Token);
        }
        finally
        {
            Console.CancelKeyPress -= handler;
        }
    }

    /// <summary>Every command besides the plugins (not registered when the command is a plugin: see <see cref="Run"/>).</summary>
    private static void Configure(IConfigurator config, CommandIndex index)
    {
        config.AddCommand<InfoCommand>("info").Also(() => index.Add<InfoCommand>("info", "Captures"))
            .WithExample("info", "memory.lime")
            .WithExample("info", "memory.kdump", "--output", "json");
        config.AddCommand<ConvertCommand>("convert").Also(() => index.Add<ConvertCommand>("convert", "Captures"))
            .WithExample("convert", "memory.kdump", "--to", "raw", "--out", "memory.raw");
        config.AddCommand<AnalyzeCommand>("analyze").Also(() => index.Add<AnalyzeCommand>("analyze", "Captures"))
            .WithExample("analyze", "memory.lime")
            .WithExample("analyze", "case/aws-i-0abc-IR-42.custody.json", "--out", "IR-42.case", "--yara", "rules/");
        config.AddBranch("symbols", symbols =>
        {
            symbols.SetDescription("Symbol tables: find what a capture needs and where it is");
            symbols.AddCommand<SymbolsCheckCommand>("check").Also(() => index.Add<SymbolsCheckCommand>("symbols check", "Captures"))
                .WithExample("symbols", "check", "memory.raw", "--symbols", "/data/symbols");
        });
        config.AddBranch("cache", cache =>
        {
            cache.SetDescription("The profile cache: parsed symbol files and Linux kernel profiles kept between commands");
            cache.AddCommand<CacheListCommand>("list").Also(() => index.Add<CacheListCommand>("cache list", "Captures"))
                .WithExample("cache", "list");
            cache.AddCommand<CacheClearCommand>("clear").Also(() => index.Add<CacheClearCommand>("cache clear", "Captures"))
                .WithExample("cache", "clear");
        });
        config.AddBranch("capture", capture =>
        {
            capture.SetDescription("Capture a cloud VM's memory into the provider's storage, verified, with a custody manifest");
            capture.AddCommand<AwsCaptureCommand>("aws").Also(() => index.Add<AwsCaptureCommand>("capture aws", "Capture and response (cloud, hypervisor)"))
                .WithExample("capture", "aws", "i-0123456789abcdef0", "--bucket", "evidence", "--case-id", "IR-42", "--plan");
            capture.AddCommand<CaptureVSphereCommand>("vsphere").Also(() => index.Add<CaptureVSphereCommand>("capture vsphere", "Capture and response (cloud, hypervisor)"))
                .WithExample("capture", "vsphere", "vm-42", "--server", "https://vc.example.org", "--case-id", "IR-1");
            capture.AddCommand<CaptureHyperVCommand>("hyperv").Also(() => index.Add<CaptureHyperVCommand>("capture hyperv", "Capture and response (cloud, hypervisor)"))
                .WithExample("capture", "hyperv", "web01", "--host", "hv01.corp.example", "--method", "checkpoint");
            capture.AddCommand<CaptureAzureCommand>("azure").Also(() => index.Add<CaptureAzureCommand>("capture azure", "Capture and response (cloud, hypervisor)"))
                .WithExample("capture", "azure", "/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/vm1",
                    "--container-url", "https://acct.blob.core.windows.net/evidence", "--tool-file", "avml", "--case-id", "IR-42");
        });
        config.AddBranch("custody", custody =>
        {
            custody.SetDescription("Custody manifests: sign and verify");
            custody.AddCommand<CustodyVerifyCommand>("verify").Also(() => index.Add<CustodyVerifyCommand>("custody verify", "Capture and response (cloud, hypervisor)"))
                .WithExample("custody", "verify", "aws-i-0abc-IR-42.custody.json", "--key", "cloudmem.pub");
            custody.AddCommand<CustodySignCommand>("sign").Also(() => index.Add<CustodySignCommand>("custody sign", "Capture and response (cloud, hypervisor)"));
            custody.AddCommand<CustodyKeygenCommand>("keygen").Also(() => index.Add<CustodyKeygenCommand>("custody keygen", "Capture and response (cloud, hypervisor)"));
        });
        config.AddCommand<RespondCommand>("respond").Also(() => index.Add<RespondCommand>("respond", "Capture and response (cloud, hypervisor)"))
            .WithExample("respond", "finding.json", "--bucket", "evidence", "--plan");
        config.AddCommand<LambdaCommand>("lambda").Also(() => index.Add<LambdaCommand>("lambda", "Capture and response (cloud, hypervisor)"));
        config.AddCommand<ServeFunctionCommand>("serve-function").Also(() => index.Add<ServeFunctionCommand>("serve-function", "Capture and response (cloud, hypervisor)"));
        config.AddCommand<DurableWorkerCommand>("durable-worker").Also(() => index.Add<DurableWorkerCommand>("durable-worker", "Capture and response (cloud, hypervisor)"));
        config.AddCommand<WorkflowStepCommand>("workflow-step").Also(() => index.Add<WorkflowStepCommand>("workflow-step", "Capture and response (cloud, hypervisor)"));
        config.AddBranch("isolate", isolate =>
        {
            isolate.SetDescription("Contain a cloud VM without stopping it, each step recorded in a custody manifest");
            isolate.AddCommand<AwsIsolateCommand>("aws").Also(() => index.Add<AwsIsolateCommand>("isolate aws", "Capture and response (cloud, hypervisor)"))
                .WithExample("isolate", "aws", "i-0123456789abcdef0", "--transition-sg", "sg-open", "--isolation-sg", "sg-closed", "--plan");
            isolate.AddCommand<IsolateAzureCommand>("azure").Also(() => index.Add<IsolateAzureCommand>("isolate azure", "Capture and response (cloud, hypervisor)"))
                .WithExample("isolate", "azure", "/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/vm1",
                    "--nsg", "/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Network/networkSecurityGroups/isolate");
        });
        // ---- fleet: many captures at once (analyze on a Durable Task hub, worker, step for AWS) and questions over all their results ----
        config.AddBranch("fleet", fleet =>
        {
            fleet.SetDescription("Many captures at once: analyse a fleet of captures on a Durable Task hub (or one capture per AWS Step Functions item), and ask questions of all their results");
            fleet.AddCommand<FleetAnalyzeCommand>("analyze").Also(() => index.Add<FleetAnalyzeCommand>("fleet analyze", "Captures"))
                .WithExample("fleet", "analyze", "captures/", "--out", "IR-42.fleet", "--workers", "3")
                .WithExample("fleet", "analyze", "s3://evidence/IR-42/", "--out", "IR-42.fleet", "--storage", "UseDevelopmentStorage=true");
            fleet.AddCommand<FleetWorkerCommand>("worker").Also(() => index.Add<FleetWorkerCommand>("fleet worker", "Captures"));
            fleet.AddCommand<FleetStepCommand>("step").Also(() => index.Add<FleetStepCommand>("fleet step", "Captures"))
                .WithExample("fleet", "step", "s3://evidence/IR-42/web01.lime", "--case", "s3://cases/IR-42");
            fleet.AddCommand<FleetQueryCommand>("query").Also(() => index.Add<FleetQueryCommand>("fleet query", "Captures"))
                .WithExample("fleet", "query", "IR-42.case", "SELECT capture_id, count(*) AS high FROM findings WHERE severity_rank >= 3 GROUP BY capture_id");
            fleet.AddCommand<FleetWhoHasCommand>("who-has").Also(() => index.Add<FleetWhoHasCommand>("fleet who-has", "Captures"))
                .WithExample("fleet", "who-has", "IR-42.case", "--connection", "203.0.113.7:4444")
                .WithExample("fleet", "who-has", "IR-42.case", "--finding", "CM-LNX-004");
        });
        // ---- end fleet ----
        config.AddCommand<BenchCommand>("bench").Also(() => index.Add<BenchCommand>("bench", "Captures"))
            .WithExample("bench", "memory.raw", "memory.lime");
    }

    /// <summary>One line, no stack trace.</summary>
    internal static string Describe(Exception exception) => exception switch
    {
        DumpFormatException e => $"error: {e.Message}",
        CloudMem.Engine.Core.KernelNotFoundException e => $"error: {e.Message}",
        CloudMem.Engine.Symbols.SymbolFormatException e => $"error: {e.Message}",
        ConvertException e => $"error: {e.Message}",
        CloudMem.Engine.Yara.YaraRuleException e => $"error: {e.Message}",
        CloudMem.Engine.Yara.YaraUnavailableException e => $"error: {e.Message}",
        CloudMem.Connectors.Core.CaptureException e => $"error: {e.Message}",
        CloudMem.Engine.Analysis.RuleException e => $"error: {e.Message}",
        CloudMem.Engine.Analysis.CaseDirectoryException e => $"error: {e.Message}",
        CloudMem.Engine.Analysis.FleetQueryException e => $"error: {e.Message}",
        OperationCanceledException => "cancelled",
        UsageException e => $"usage: {e.Message} (see cloudmem {e.Command} --help)",
        ArgumentException e when e.TargetSite?.DeclaringType == typeof(PluginRegistry) => $"usage: {e.Message}",
        CommandParseException or CommandRuntimeException => $"usage: {Flatten(exception.Message)} (see cloudmem --help)",
        IOException or UnauthorizedAccessException => $"error: {Flatten(exception.Message)}",
        _ => $"error: {exception.GetType().Name}: {Flatten(exception.Message)}",
    };

    /// <summary>The version printed by --version and the help (informational version of the build).</summary>
    internal static string Version => typeof(CliApp).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion?.Split('+')[0] ?? "0.0.0";

    private static string Flatten(string text) => text.ReplaceLineEndings(" ").Trim();
}
