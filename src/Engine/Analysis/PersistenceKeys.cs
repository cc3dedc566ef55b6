using System.Diagnostics;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Windows;

namespace CloudMem.Engine.Analysis;

/// <summary>
/// The registry keys Windows starts programs from (Run/RunOnce of the machine and of each user, Winlogon, and every
/// service's key), read with <c>windows.registry.printkey</c> (which <c>analyze</c> otherwise skips: it needs a key)
/// into one <c>windows.registry.printkey</c> table that the persistence rules read.
/// </summary>
public static class PersistenceKeys
{
    /// <summary>At most this many service keys are read (a real system has a few hundred).</summary>
    public const int MaxServices = 4096;

    /// <summary>The keys read, relative to a hive's root (SOFTWARE, NTUSER.DAT, SYSTEM).</summary>
    public static IReadOnlyList<string> Keys { get; } =
    [
        @"Microsoft\Windows\CurrentVersion\Run", @"Microsoft\Windows\CurrentVersion\RunOnce",
        @"Software\Microsoft\Windows\CurrentVersion\Run", @"Software\Microsoft\Windows\CurrentVersion\RunOnce",
        @"Microsoft\Windows NT\CurrentVersion\Winlogon",
    ];

    /// <summary>The service list key; each of its subkeys is read too.</summary>
    public const string Services = @"ControlSet001\Services";

    /// <summary>Runs <paramref name="printkey"/> on every persistence key; one run, one table (notes name the key).</summary>
    internal static (PluginRun Run, IRowsReport? Table) Read(IPlugin printkey, PluginContext context, CancellationToken ct)
    {
        var clock = Stopwatch.StartNew();
        var rows = new List<PrintKeyRow>();
        var notes = new List<string>();
        try
        {
            foreach (string key in Keys)
            {
                Add(printkey, context, key, rows, notes, ct);
            }
            List<PrintKeyRow> services = Add(printkey, context, Services, rows, notes, ct);
            string[] names = [.. services.Where(r => r.Type == "Key" && r.Name is not null).Select(r => r.Name!).Distinct(StringComparer.OrdinalIgnoreCase)];
            if (names.Length > MaxServices)
            {
                notes.Add($@"{Services}: {names.Length} service keys, only the first {MaxServices} read");
            }
            foreach (string name in names.Take(MaxServices))
            {
                Add(printkey, context, $@"{Services}\{name}", rows, notes, ct);
            }
        }
        catch (OperationCanceledException) when (ct.IsCancellationRequested)
        {
            throw;
        }
#pragma warning disable CA1031 // as for any plugin: its failure is recorded and the analysis goes on
        catch (Exception e)
#pragma warning restore CA1031
        {
            return (new PluginRun(printkey.Info.Name, clock.Elapsed, 0, Analyzer.OneLine(e), notes), null);
        }
        var table = new RowsReport<PrintKeyRow>(printkey.Info.Name, rows, notes);
        return (new PluginRun(printkey.Info.Name, clock.Elapsed, rows.Count, null, notes), table);
    }

    private static List<PrintKeyRow> Add(IPlugin printkey, PluginContext context, string key, List<PrintKeyRow> rows, List<string> notes, CancellationToken ct)
    {
        IReport report = printkey.Run(context, new PluginArguments { KeyPath = key }, ct);
        List<PrintKeyRow> found = report is RowsReport<PrintKeyRow> typed ? [.. typed.Rows] : [];
        rows.AddRange(found);
        // A key missing from most hives is normal: only faults are worth a note.
        notes.AddRange(report.Notes.Where(n => !n.StartsWith("the key '", StringComparison.Ordinal) || n.Contains("did not read", StringComparison.Ordinal)));
        return found;
    }
}
