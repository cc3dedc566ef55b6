using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Analysis;

/// <summary>How bad a finding is, in the order a responder reads them (most severe last in the enum, first in reports).</summary>
public enum Severity
{
    /// <summary>Context worth knowing; not a sign of compromise by itself.</summary>
    Info,

    /// <summary>Unusual; worth a look when there is time.</summary>
    Low,

    /// <summary>Suspicious; look at it in this case.</summary>
    Medium,

    /// <summary>Very likely malicious.</summary>
    High,

    /// <summary>Malicious with kernel or credential impact: act now.</summary>
    Critical,
}

/// <summary>One row that proves a finding: which plugin produced it, the key that finds it again (in the plugin's
/// output and in <c>case.sqlite</c>'s table of that plugin), and the row's values as the plugin gave them.</summary>
/// <param name="Plugin">The plugin name (for example <c>windows.malfind</c>).</param>
/// <param name="RowKey">A stable key of the row within that plugin's rows (for example <c>pid=5120,start=0x1f0000</c>).</param>
/// <param name="Row">The typed row itself (a plugin row record).</param>
public sealed record Evidence(string Plugin, string RowKey, object Row);

/// <summary>One answer: a rule that matched, with the rows that prove it.</summary>
/// <param name="RuleId">The rule's id (for example <c>CM-WIN-001</c>).</param>
/// <param name="Title">The rule's title.</param>
/// <param name="Severity">How bad it is.</param>
/// <param name="Technique">The MITRE ATT&amp;CK technique id (for example <c>T1055</c> or <c>T1055.012</c>).</param>
/// <param name="Confidence">How sure the rule is, 0 to 1.</param>
/// <param name="Summary">One sentence saying what was found, naming the process/module/address.</param>
/// <param name="Pid">The process it concerns, when it concerns one.</param>
/// <param name="ProcessName">That process's name, when known.</param>
/// <param name="Evidence">The rows that prove it (at least one).</param>
public sealed record Finding(
    string RuleId, string Title, Severity Severity, string Technique, double Confidence, string Summary,
    long? Pid, string? ProcessName, IReadOnlyList<Evidence> Evidence);

/// <summary>One timestamped event from any plugin's rows.</summary>
/// <param name="Time">When (UTC).</param>
/// <param name="Source">The plugin that gave it.</param>
/// <param name="Kind">What happened (process start, process exit, socket, registry write, module load, log...).</param>
/// <param name="Description">One line: who and what.</param>
/// <param name="Pid">The process concerned, when known.</param>
public sealed record TimelineEvent(DateTimeOffset Time, string Source, string Kind, string Description, long? Pid);

/// <summary>How one plugin run went.</summary>
/// <param name="Plugin">The plugin name.</param>
/// <param name="Elapsed">Wall time of the run.</param>
/// <param name="Rows">Rows it returned (0 when it failed).</param>
/// <param name="Error">The one-line error when it failed; null when it ran.</param>
/// <param name="Notes">The plugin's notes (why a walk stopped, doubts).</param>
public sealed record PluginRun(string Plugin, TimeSpan Elapsed, int Rows, string? Error, IReadOnlyList<string> Notes);

/// <summary>A process as the report draws it (the process tree).</summary>
/// <param name="Pid">Process id.</param>
/// <param name="Ppid">Parent process id.</param>
/// <param name="Name">Image or command name.</param>
/// <param name="Start">Start time, when known.</param>
/// <param name="CommandLine">Full command line, when read.</param>
/// <param name="Hidden">Not on the kernel's process list (found by a scan only).</param>
public sealed record CaseProcess(long Pid, long Ppid, string Name, DateTimeOffset? Start, string? CommandLine, bool Hidden);

/// <summary>A network endpoint as the report lists it.</summary>
/// <param name="Pid">Owner process id, when known.</param>
/// <param name="Process">Owner process name, when known.</param>
/// <param name="Protocol">TCP, TCPv6, UDP, UDPv6, UNIX...</param>
/// <param name="Local">Local address and port (<c>10.0.0.5:443</c>, <c>[::1]:22</c>).</param>
/// <param name="Remote">Remote address and port, when connected.</param>
/// <param name="State">TCP state (LISTEN, ESTABLISHED...), when it has one.</param>
public sealed record CaseConnection(long? Pid, string? Process, string Protocol, string Local, string? Remote, string? State);

/// <summary>Where the capture came from: the file, its hash, and the custody manifest's facts when there is one.</summary>
/// <param name="ImagePath">The capture file analysed.</param>
/// <param name="Format">The capture format name.</param>
/// <param name="Bytes">Physical bytes captured.</param>
/// <param name="Sha256">SHA-256 of the capture file (lowercase hex), when computed.</param>
/// <param name="Os">Linux or Windows.</param>
/// <param name="Kernel">The kernel banner or build.</param>
/// <param name="AnalysedAt">When the analysis ran (UTC).</param>
/// <param name="Custody">The custody manifest's facts (who captured what, when, from which instance, which hash), when the
/// analysis started from a manifest; name/value pairs in the manifest's own order.</param>
public sealed record CaseProvenance(
    string ImagePath, string Format, long Bytes, string? Sha256, string Os, string? Kernel, DateTimeOffset AnalysedAt,
    IReadOnlyList<KeyValuePair<string, string>>? Custody);

/// <summary>Everything one <c>analyze</c> run found: what the reports and the case database are written from.</summary>
/// <param name="Provenance">Where the capture came from.</param>
/// <param name="Runs">Every plugin run, in the order run, with timing and errors.</param>
/// <param name="Tables">The rows of every plugin that ran (what <c>case.sqlite</c> stores, one table per plugin).</param>
/// <param name="Findings">The findings, most severe first.</param>
/// <param name="Processes">The processes (for the tree).</param>
/// <param name="Connections">The network endpoints.</param>
/// <param name="Timeline">Every timestamped event, oldest first.</param>
public sealed record CaseReport(
    CaseProvenance Provenance, IReadOnlyList<PluginRun> Runs, IReadOnlyList<IRowsReport> Tables,
    IReadOnlyList<Finding> Findings, IReadOnlyList<CaseProcess> Processes, IReadOnlyList<CaseConnection> Connections,
    IReadOnlyList<TimelineEvent> Timeline)
{
    /// <summary>What the analysis itself has to say (what the timeline leaves out and why); empty when nothing.</summary>
    public IReadOnlyList<string> Notes { get; init; } = [];
}
