using CloudMem.Cli.Commands;
using CloudMem.Engine.Convert;
using CloudMem.VmStateParsers;
using Spectre.Console.Cli;

namespace CloudMem.Cli;

/// <summary>The command line: commands are registered here; errors become one line on stderr and exit code 2.</summary>
internal static class CliApp
{
    public static int Run(string[] args, TextWriter? error = null)
    {
        error ??= Console.Error;
        var app = new CommandApp();
        app.Configure(config =>
        {
            config.SetApplicationName("cloudmem");
            config.AddCommand<InfoCommand>("info")
                .WithExample("info", "memory.lime")
                .WithExample("info", "memory.kdump", "--output", "json");
            config.AddCommand<ConvertCommand>("convert")
                .WithExample("convert", "memory.kdump", "--to", "raw", "--out", "memory.raw");
            config.AddCommand<LinuxKernelCommand>("linux.kernel")
                .WithExample("linux.kernel", "memory.lime");
            config.AddCommand<LinuxPsListCommand>("linux.pslist").WithExample("linux.pslist", "memory.lime", "--output", "json");
            config.AddCommand<LinuxPsAuxCommand>("linux.psaux");
            config.AddCommand<LinuxPsTreeCommand>("linux.pstree");
            config.AddCommand<LinuxSockStatCommand>("linux.sockstat");
            config.AddCommand<LinuxLsModCommand>("linux.lsmod");
            config.AddCommand<LinuxMapsCommand>("linux.maps").WithExample("linux.maps", "memory.lime", "--pid", "1");
            config.AddCommand<LinuxMalfindCommand>("linux.malfind").WithExample("linux.malfind", "memory.lime");
            config.AddCommand<LinuxProcDumpCommand>("linux.procdump").WithExample("linux.procdump", "memory.lime", "--pid", "1", "--out", "dump");
            config.AddCommand<LinuxDmesgCommand>("linux.dmesg");
            config.AddCommand<LinuxEnvarsCommand>("linux.envars").WithExample("linux.envars", "memory.lime", "--pid", "1");
            config.AddCommand<LinuxBashHistoryCommand>("linux.bash");
            config.AddCommand<LinuxPsScanCommand>("linux.psscan");
            config.AddCommand<LinuxHiddenModulesCommand>("linux.hidden_modules");
            config.AddCommand<WindowsPsListCommand>("windows.pslist").WithExample("windows.pslist", "memory.raw", "--symbols", "symbols");
            config.AddCommand<WindowsPsTreeCommand>("windows.pstree").WithExample("windows.pstree", "memory.raw", "--symbols", "symbols");
            config.AddCommand<WindowsPsScanCommand>("windows.psscan").WithExample("windows.psscan", "memory.raw", "--symbols", "symbols");
            config.AddCommand<WindowsVadInfoCommand>("windows.vadinfo").WithExample("windows.vadinfo", "memory.raw", "--symbols", "symbols", "--pid", "6044");
            config.AddCommand<WindowsLdrModulesCommand>("windows.ldrmodules").WithExample("windows.ldrmodules", "memory.raw", "--symbols", "symbols");
            config.AddCommand<WindowsMalfindCommand>("windows.malfind").WithExample("windows.malfind", "memory.raw", "--symbols", "symbols");
            config.AddCommand<WindowsHollowFindCommand>("windows.hollowfind").WithExample("windows.hollowfind", "memory.raw", "--symbols", "symbols");
            config.AddCommand<WindowsProcDumpCommand>("windows.procdump").WithExample("windows.procdump", "memory.raw", "--symbols", "symbols", "--pid", "844", "--out", "dump");
            config.AddCommand<WindowsDllDumpCommand>("windows.dlldump").WithExample("windows.dlldump", "memory.raw", "--symbols", "symbols", "--pid", "5120", "--out", "dump");
            config.AddCommand<WindowsInfoCommand>("windows.info").WithExample("windows.info", "memory.raw", "--symbols", "symbols");
            config.AddCommand<WindowsCmdLineCommand>("windows.cmdline").WithExample("windows.cmdline", "memory.raw", "--symbols", "symbols", "--pid", "4");
            config.AddCommand<WindowsEnvarsCommand>("windows.envars").WithExample("windows.envars", "memory.raw", "--symbols", "symbols");
            config.AddCommand<WindowsDllListCommand>("windows.dlllist").WithExample("windows.dlllist", "memory.raw", "--symbols", "symbols", "--pid", "4");
            config.AddCommand<WindowsThreadsCommand>("windows.threads").WithExample("windows.threads", "memory.raw", "--symbols", "symbols");
            config.AddCommand<WindowsGetSidsCommand>("windows.getsids").WithExample("windows.getsids", "memory.raw", "--symbols", "symbols");
            config.AddCommand<WindowsHandlesCommand>("windows.handles").WithExample("windows.handles", "memory.raw", "--symbols", "symbols", "--pid", "4");
            config.AddCommand<WindowsModulesCommand>("windows.modules").WithExample("windows.modules", "memory.raw", "--symbols", "symbols");
            config.AddCommand<WindowsModScanCommand>("windows.modscan").WithExample("windows.modscan", "memory.raw", "--symbols", "symbols");
            config.AddBranch("symbols", symbols =>
            {
                symbols.SetDescription("Symbol tables: find what a capture needs and where it is");
                symbols.AddCommand<SymbolsCheckCommand>("check")
                    .WithExample("symbols", "check", "memory.raw", "--symbols", "/data/symbols");
            });
            config.AddBranch("capture", capture =>
            {
                capture.SetDescription("Capture a cloud VM's memory into the provider's storage, verified, with a custody manifest");
                capture.AddCommand<AwsCaptureCommand>("aws")
                    .WithExample("capture", "aws", "i-0123456789abcdef0", "--bucket", "evidence", "--case-id", "IR-42", "--plan");
                capture.AddCommand<CaptureVSphereCommand>("vsphere")
                    .WithDescription("Memory snapshot of a vSphere VM (vCenter/ESXi), downloaded, verified and removed, with a custody manifest")
                    .WithExample("capture", "vsphere", "vm-42", "--server", "https://vc.example.org", "--case-id", "IR-1");
                capture.AddCommand<CaptureHyperVCommand>("hyperv")
                    .WithDescription("Standard checkpoint or Save-VM of a Hyper-V VM over PowerShell remoting, copied and verified, with a custody manifest")
                    .WithExample("capture", "hyperv", "web01", "--host", "hv01.corp.example", "--method", "checkpoint");
                capture.AddCommand<CaptureAzureCommand>("azure")
                    .WithExample("capture", "azure", "/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/vm1",
                        "--container-url", "https://acct.blob.core.windows.net/evidence", "--tool-file", "avml", "--case-id", "IR-42");
            });
            config.AddBranch("custody", custody =>
            {
                custody.SetDescription("Custody manifests: sign and verify");
                custody.AddCommand<CustodyVerifyCommand>("verify").WithExample("custody", "verify", "aws-i-0abc-IR-42.custody.json", "--key", "cloudmem.pub");
                custody.AddCommand<CustodySignCommand>("sign");
                custody.AddCommand<CustodyKeygenCommand>("keygen");
            });
            config.AddCommand<RespondCommand>("respond")
                .WithExample("respond", "finding.json", "--bucket", "evidence", "--plan");
            config.AddCommand<LambdaCommand>("lambda");
            config.AddCommand<ServeFunctionCommand>("serve-function");
            config.AddBranch("isolate", isolate =>
            {
                isolate.SetDescription("Contain a cloud VM without stopping it, each step recorded in a custody manifest");
                isolate.AddCommand<AwsIsolateCommand>("aws")
                    .WithExample("isolate", "aws", "i-0123456789abcdef0", "--transition-sg", "sg-open", "--isolation-sg", "sg-closed", "--plan");
                isolate.AddCommand<IsolateAzureCommand>("azure")
                    .WithExample("isolate", "azure", "/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Compute/virtualMachines/vm1",
                        "--nsg", "/subscriptions/SUB/resourceGroups/RG/providers/Microsoft.Network/networkSecurityGroups/isolate");
            });
            config.AddCommand<BenchCommand>("bench")
                .WithExample("bench", "memory.raw", "memory.lime");
            config.SetExceptionHandler((exception, _) =>
            {
                error.WriteLine($"cloudmem: {Describe(exception)}");
                return exception is OperationCanceledException ? (int)ExitCode.Cancelled : (int)ExitCode.Error;
            });
        });
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

    /// <summary>One line, no stack trace.</summary>
    internal static string Describe(Exception exception) => exception switch
    {
        DumpFormatException e => $"error: {e.Message}",
        CloudMem.Engine.Linux.KernelNotFoundException e => $"error: {e.Message}",
        CloudMem.Engine.Symbols.SymbolFormatException e => $"error: {e.Message}",
        ConvertException e => $"error: {e.Message}",
        CloudMem.Connectors.Core.CaptureException e => $"error: {e.Message}",
        OperationCanceledException => "cancelled",
        CommandParseException or CommandRuntimeException => $"usage: {Flatten(exception.Message)} (see cloudmem --help)",
        IOException or UnauthorizedAccessException => $"error: {Flatten(exception.Message)}",
        _ => $"error: {exception.GetType().Name}: {Flatten(exception.Message)}",
    };

    private static string Flatten(string text) => text.ReplaceLineEndings(" ").Trim();
}
