using CloudMem.Engine.Analysis;
using CloudMem.Engine.Core;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.Tests.Windows;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Analysis;

/// <summary>
/// analyze reads the persistence keys (Run/RunOnce, Winlogon, every service) with windows.registry.printkey: on the
/// registry scenario (attack + hives written by hivexregedit) the planted Run values and service are findings.
/// </summary>
public sealed class AnalyzeRegistryTests(WindowsRegistryImages images) : IClassFixture<WindowsRegistryImages>
{
    [SkippableFact]
    public void Run_keys_and_a_service_in_a_temporary_folder_are_persistence_findings()
    {
        WindowsRegistryImages.Built built = images.Get(WindowsSymbols.Win10);
        using RunMappedMemory memory = CaptureOpener.Open(built.Raw);
        CaseReport report = Analyzer.Run(memory, new AnalysisOptions { ImagePath = built.Raw, Symbols = new SymbolOptions([built.Root]) });

        // RegistryScenario: SOFTWARE Run SecurityHealth (%windir%\system32) and Updater (C:\Users\Public\update.exe),
        // alice's NTUSER.DAT Run OneDriveSync (AppData\Roaming\sync.exe), SYSTEM service EvilSvc (%SystemRoot%\Temp\evilsvc.exe).
        Assert.Equal(
        [
            ("CM-WIN-016", "T1547.001", @"\REGISTRY\MACHINE\SOFTWARE\Microsoft\Windows\CurrentVersion\Run value Updater runs C:\Users\Public\update.exe"),
            ("CM-WIN-016", "T1547.001", $@"\REGISTRY\USER\{RegistryScenario.AliceSid}\Software\Microsoft\Windows\CurrentVersion\Run value OneDriveSync runs C:\Users\alice\AppData\Roaming\sync.exe -bg"),
            ("CM-WIN-018", "T1543.003", @"service \REGISTRY\MACHINE\SYSTEM\ControlSet001\Services\EvilSvc has ImagePath %SystemRoot%\Temp\evilsvc.exe"),
        ], report.Findings.Where(f => f.RuleId is "CM-WIN-016" or "CM-WIN-018").Select(f => (f.RuleId, f.Technique, f.Summary)).Order());
        Assert.Equal(3, report.Findings.Count(f => f.RuleId == "CM-WIN-017" && f.Severity == Severity.Info));
        Assert.DoesNotContain(report.Findings, f => f.RuleId == "CM-WIN-019");
        Finding service = report.Findings.Single(f => f.RuleId == "CM-WIN-018");
        PrintKeyRow row = Assert.IsType<PrintKeyRow>(Assert.Single(service.Evidence).Row);
        Assert.Equal(("REG_EXPAND_SZ", "ImagePath"), (row.Type, row.Name));
        PluginRun run = report.Runs.Single(r => r.Plugin == "windows.registry.printkey");
        Assert.Null(run.Error);
        // hashdump never runs: no account hash reaches the case.
        Assert.DoesNotContain(report.Runs, r => r.Plugin == "windows.hashdump");
    }
}
