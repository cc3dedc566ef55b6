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
    [Description("The capture file (format detected from its content), or a capture in object storage read in place: s3://BUCKET/KEY, https://ACCOUNT.blob.core.windows.net/CONTAINER/BLOB, or an http(s) URL that serves byte ranges")]
    public string Image { get; init; } = "";

    [CommandOption("--format <NAME>")]
    [Description("Skip detection and read the file as this format (raw, lime, avml, elf, kdump, kdump-flattened, crashdump, hiberfil, hyperv, vmware for .vmss/.vmsn, vmem)")]
    public string? Format { get; init; }

    [CommandOption("--stats")]
    [Description("When done, print to stderr what reading the capture cost: bytes fetched, requests, cache hits and misses (remote captures)")]
    public bool Stats { get; init; }

    [CommandOption("--remote-cache <MiB>")]
    [Description("Block cache size for a remote capture, in MiB (default 256)")]
    public int? RemoteCacheMiB { get; init; }

    public override ValidationResult Validate()
    {
        ValidationResult common = base.Validate();
        if (!common.Successful)
        {
            return common;
        }
        return RemoteCacheMiB is null or (>= 1 and <= 1 << 20) ? ValidationResult.Success() : ValidationResult.Error("--remote-cache must be 1 to 1048576 MiB");
    }
}
