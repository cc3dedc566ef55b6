using System.ComponentModel;
using CloudMem.Engine.Analysis;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>Settings of the fleet commands that read a case directory.</summary>
internal class FleetCaseSettings : CommonSettings
{
    [CommandArgument(0, "<CASE>")]
    [Description("A fleet case directory (its captures/*/ hold one case each) or one case directory written by analyze")]
    public string Case { get; init; } = "";
}

/// <summary>cloudmem fleet query CASE "SQL"</summary>
[Description("Ask any question of all the captures of a case in SQL (DuckDB, embedded): views captures, findings, processes, connections, yara, runs over the cases' Parquet files (docs/ARCHITECTURE.md, Fleet queries)")]
internal sealed class FleetQueryCommand : Command<FleetQueryCommand.Settings>
{
    internal sealed class Settings : FleetCaseSettings
    {
        [CommandArgument(1, "<SQL>")]
        [Description("The SQL statement (DuckDB dialect), e.g. \"SELECT capture_id, count(*) FROM findings GROUP BY capture_id\"")]
        public string Sql { get; init; } = "";
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        using FleetCase fleet = FleetCase.Open(settings.Case);
        ReportOutput.Write(fleet.Query(settings.Sql), settings.OutputFormat, Console.Error);
        return (int)ExitCode.Ok;
    }
}

/// <summary>cloudmem fleet who-has CASE --yara RULE | --connection IP[:PORT] | --process NAME | --finding RULE_ID</summary>
[Description("Which captures of a case have a YARA hit, a connection, a process or a finding: one row per capture that has it; exit 0 when some capture has it, 1 when none")]
internal sealed class FleetWhoHasCommand : Command<FleetWhoHasCommand.Settings>
{
    internal sealed class Settings : FleetCaseSettings
    {
        [CommandOption("--yara <RULE>")]
        [Description("A YARA rule name (as the rule file spells it; the captures must have been analysed with --yara)")]
        public string? Yara { get; init; }

        [CommandOption("--connection <ENDPOINT>")]
        [Description("IP, IP:PORT, [[IPv6]]:PORT, :PORT or *:PORT, local or remote side")]
        public string? Connection { get; init; }

        [CommandOption("--process <NAME>")]
        [Description("A process name as the kernel keeps it (Linux comm, Windows image name), case-insensitive; * and ? are wildcards")]
        public string? Process { get; init; }

        [CommandOption("--finding <RULE_ID>")]
        [Description("A triage rule id (CM-LNX-004, CM-WIN-009...)")]
        public string? Finding { get; init; }

        internal (WhoHasKind Kind, string Value)[] Asked =>
        [
            .. new (WhoHasKind Kind, string? Value)[] { (WhoHasKind.Yara, Yara), (WhoHasKind.Connection, Connection), (WhoHasKind.Process, Process), (WhoHasKind.Finding, Finding) }
                .Where(a => a.Value is not null).Select(a => (a.Kind, a.Value!)),
        ];

        public override ValidationResult Validate()
            => Asked.Length == 1 ? base.Validate() : ValidationResult.Error("give exactly one of --yara, --connection, --process, --finding");
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        (WhoHasKind kind, string value) = settings.Asked[0];
        using FleetCase fleet = FleetCase.Open(settings.Case);
        RowsReport<WhoHasRow> report = FleetQuestions.WhoHas(fleet, kind, value);
        ReportOutput.Write(report, settings.OutputFormat, Console.Error);
        return report.Rows.Count > 0 ? (int)ExitCode.Ok : (int)ExitCode.NotFound;
    }
}
