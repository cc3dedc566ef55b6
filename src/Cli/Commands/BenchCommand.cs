using System.ComponentModel;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text.Json;
using CloudMem.Engine.Bench;
using CloudMem.Engine.Output;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

[Description("Measure read speed (sequential GB/s, random 4 KiB reads/s) and peak memory, one process per capture")]
internal sealed class BenchCommand : Command<BenchCommand.Settings>
{
    internal sealed class Settings : CommonSettings
    {
        [CommandArgument(0, "<IMAGE>")]
        [Description("Capture files to measure")]
        public string[] Images { get; init; } = [];

        [CommandOption("--random <COUNT>")]
        [Description("Random 4 KiB reads per capture")]
        [DefaultValue(200000)]
        public int Random { get; init; } = 200000;

        [CommandOption("--in-process")]
        [Description("Measure in this process (used by the per-capture child processes)")]
        public bool InProcess { get; init; }

        public override ValidationResult Validate()
            => Random <= 0 ? ValidationResult.Error("--random must be positive") : base.Validate();
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        var results = new List<ReadBenchmarkResult>();
        foreach (string image in settings.Images)
        {
            cancellationToken.ThrowIfCancellationRequested();
            results.Add(settings.InProcess ? ReadBenchmark.Run(image, settings.Random) : RunChild(image, settings.Random));
        }
        string machine = $"{Environment.ProcessorCount} cores, {GC.GetGCMemoryInfo().TotalAvailableMemoryBytes / (1L << 30)} GiB, {RuntimeInformation.OSDescription}";
        ReportOutput.Write(new BenchmarkReport(machine, RuntimeInformation.FrameworkDescription, results), settings.OutputFormat);
        return (int)ExitCode.Ok;
    }

    // One child per capture, so each peak-RSS figure belongs to that capture alone.
    private static ReadBenchmarkResult RunChild(string image, int random)
    {
        var start = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
        {
            start.ArgumentList.Add(typeof(BenchCommand).Assembly.Location);
        }
        foreach (string arg in new[] { "bench", "--in-process", "--output", "jsonl", "--random", random.ToString(System.Globalization.CultureInfo.InvariantCulture), image })
        {
            start.ArgumentList.Add(arg);
        }
        using Process child = Process.Start(start)!;
        string stdout = child.StandardOutput.ReadToEnd();
        string stderr = child.StandardError.ReadToEnd();
        child.WaitForExit();
        if (child.ExitCode != 0)
        {
            throw new InvalidOperationException(stderr.Trim());
        }
        return JsonSerializer.Deserialize<ReadBenchmarkResult>(stdout.Trim(), new JsonSerializerOptions { PropertyNameCaseInsensitive = true })!;
    }
}
