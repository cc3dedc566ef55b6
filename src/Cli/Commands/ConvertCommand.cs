using System.ComponentModel;
using CloudMem.Engine.Convert;
using CloudMem.Engine.Output;
using CloudMem.VmStateParsers;
using CloudMem.VmStateParsers.Writing;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

[Description("Write a capture's physical memory as another format (never overwrites; verifies what it wrote)")]
internal sealed class ConvertCommand : Command<ConvertCommand.Settings>
{
    internal sealed class Settings : CaptureSettings
    {
        [CommandOption("--to <FORMAT>")]
        [Description("Target format: raw (padded, sparse), lime, vmsn or vmss (VMware state + NAME.vmem; --variant inline), dmp (Windows crash dump; --variant full or bitmap), vmrs (Hyper-V), hiberfil (Windows hibernation), swsusp (Linux hibernation in a swap file; --variant lzo, none or lz4)")]
        public string To { get; init; } = "";

        [CommandOption("--variant <NAME>")]
        [Description("Format variant, where the target has several (e.g. dmp: full or bitmap)")]
        public string? Variant { get; init; }

        [CommandOption("--out <FILE>")]
        [Description("Output file; must not exist")]
        public string Out { get; init; } = "";

        public override ValidationResult Validate()
        {
            if (CaptureConverter.Find(To) is null)
            {
                string known = string.Join(", ", CaptureConverter.Writers.Select(w => w.Name));
                return ValidationResult.Error($"--to must be one of {known}{(To.Length == 0 ? "" : $", not '{To}'")}");
            }
            return Out.Length == 0 ? ValidationResult.Error("--out FILE is required") : base.Validate();
        }
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        using RunMappedMemory memory = CaptureFiles.Open(settings.Image, settings.Format);
        string target = settings.To.ToLowerInvariant();
        ConvertResult result;
        if (Console.IsErrorRedirected)
        {
            result = CaptureConverter.Convert(settings.Image, memory, target, settings.Out, settings.Variant, null, cancellationToken);
        }
        else
        {
            IAnsiConsole console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
            result = null!;
            console.Progress()
                .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
                .Start(ctx =>
                {
                    var tasks = new Dictionary<string, ProgressTask>();
                    var progress = new SynchronousProgress(p =>
                    {
                        if (!tasks.TryGetValue(p.Phase, out ProgressTask? task))
                        {
                            task = tasks[p.Phase] = ctx.AddTask(p.Phase, maxValue: Math.Max(1, p.Total));
                        }
                        task.Value = p.Done;
                    });
                    result = CaptureConverter.Convert(settings.Image, memory, target, settings.Out, settings.Variant, progress, cancellationToken);
                });
        }
        ReportOutput.Write(result, settings.OutputFormat);
        return (int)ExitCode.Ok;
    }

    private sealed class SynchronousProgress(Action<ConvertProgress> report) : IProgress<ConvertProgress>
    {
        private long _lastTick;

        public void Report(ConvertProgress value)
        {
            long now = Environment.TickCount64;
            if (now - _lastTick >= 100 || value.Done == value.Total)
            {
                _lastTick = now;
                report(value);
            }
        }
    }
}
