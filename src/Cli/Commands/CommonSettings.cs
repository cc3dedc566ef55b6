using System.ComponentModel;
using CloudMem.Engine.Output;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Settings every command has.</summary>
internal class CommonSettings : CommandSettings
{
    [CommandOption("-o|--output <FORMAT>")]
    [Description("Output format: table (default), json, jsonl or csv")]
    [DefaultValue("table")]
    public string Output { get; init; } = "table";

    public OutputFormat OutputFormat => Output.ToLowerInvariant() switch
    {
        "json" => OutputFormat.Json,
        "jsonl" => OutputFormat.Jsonl,
        "csv" => OutputFormat.Csv,
        _ => OutputFormat.Table,
    };

    public override ValidationResult Validate()
        => Output.ToLowerInvariant() is "table" or "json" or "jsonl" or "csv"
            ? ValidationResult.Success()
            : ValidationResult.Error($"--output must be table, json, jsonl or csv, not '{Output}'");
}

/// <summary>Settings of commands that take one capture.</summary>
internal class CaptureSettings : CommonSettings
{
    [CommandArgument(0, "<IMAGE>")]
    [Description("The capture file (format detected from its content)")]
    public string Image { get; init; } = "";

    [CommandOption("--format <NAME>")]
    [Description("Skip detection and read the file as this format (raw, lime, avml, elf, kdump, kdump-flattened, crashdump, hiberfil, hyperv, vmware for .vmss/.vmsn, vmem)")]
    public string? Format { get; init; }
}
