using CloudMem.Engine.Analysis;
using CloudMem.Engine.Core;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.Tests.Windows;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Analysis;

/// <summary>
/// analyze on the registry scenario (attack + hives written by hivexregedit, SSDT hook and callbacks of a hidden
/// driver): every planted persistence entry, kernel hook and stored logon password is a finding with its ATT&amp;CK id.
/// </summary>
public sealed class AnalyzeRegistryTests(WindowsRegistryImages images, Xunit.Abstractions.ITestOutputHelper output) : IClassFixture<WindowsRegistryImages>
{
    [SkippableFact]
    public void Planted_persistence_kernel_hooks_and_stored_password_are_each_a_finding()
    {
        WindowsRegistryImages.Built built = images.Get(WindowsSymbols.Win10);
        using RunMappedMemory memory = CaptureOpener.Open(built.Raw);
        CaseReport report = Analyzer.Run(memory, new AnalysisOptions { ImagePath = built.Raw, Symbols = new SymbolOptions([built.Root]) });
        foreach (Finding f in report.Findings)
        {
            output.WriteLine($"FINDING {f.RuleId} {f.Technique} {f.Summary}");
        }

        // RegistryScenario plants: SOFTWARE Run Updater (C:\Users\Public\update.exe) and Wow6432Node Run AdobeHelper
        // (encoded PowerShell), alice's Run OneDriveSync (AppData), services EvilSvc (%SystemRoot%\Temp) and EvilDll
        // (ServiceDll in ProgramData), an IFEO Debugger on sethc.exe, the hidden task \SystemHealthCheck, KiServiceTable[38]
        // and two notify callbacks in the hidden rootkit.sys, and an auto-logon DefaultPassword LSA secret. SecurityHealth
        // (system32) is context only; Winlogon is default. services.exe runs EvilSvc from C:\Windows\Temp; tcpip's driver
        // object sends IRP_MJ_DEVICE_CONTROL into rootkit.sys and IRP_MJ_INTERNAL_DEVICE_CONTROL to pool code; rootkit.sys
        // also registered a registry callback.
        (string Rule, string Technique, string Names)[] planted =
        [
            ("CM-WIN-016", "T1547.001", @"Run value Updater runs C:\Users\Public\update.exe"),
            ("CM-WIN-016", "T1547.001", @"Wow6432Node\Microsoft\Windows\CurrentVersion\Run value AdobeHelper runs powershell.exe"),
            ("CM-WIN-016", "T1547.001", @"Run value OneDriveSync runs C:\Users\alice\AppData\Roaming\sync.exe -bg"),
            ("CM-WIN-018", "T1543.003", @"service ControlSet001\Services\EvilSvc runs %SystemRoot%\Temp\evilsvc.exe"),
            ("CM-WIN-018", "T1543.003", @"(ServiceDll C:\ProgramData\Microsoft\Crypto\evil.dll"),
            ("CM-WIN-020", "T1546.012", @"Image File Execution Options\sethc.exe Debugger runs C:\Windows\System32\cmd.exe"),
            ("CM-WIN-021", "T1053.005", @"task \SystemHealthCheck runs C:\ProgramData\svc\health.exe"),
            ("CM-WIN-022", "T1014", $"KiServiceTable[{RegistryScenario.HookedService}] points to"),
            ("CM-WIN-023", "T1014", "PspCreateProcessNotifyRoutine callback"),
            ("CM-WIN-023", "T1014", "PspLoadImageNotifyRoutine callback"),
            ("CM-WIN-024", "T1552.002", "LSA secret DefaultPassword holds a plaintext logon password"),
            ("CM-WIN-023", "T1014", "CallbackListHead callback"),
            ("CM-WIN-025", "T1543.003", @"service EvilSvc (Running, start Automatic) runs C:\Windows\Temp\evilsvc.exe"),
            ("CM-WIN-026", "T1014", @"\Driver\Tcpip IRP_MJ_DEVICE_CONTROL points to"),
            ("CM-WIN-026", "T1014", @"\Driver\Tcpip IRP_MJ_INTERNAL_DEVICE_CONTROL points to"),
            ("CM-WIN-027", "T1070.006", "MFT record 10817 evilsvc.exe: $STANDARD_INFORMATION created 2019-12-07"),
        ];
        string[] persistenceRules = [.. planted.Select(p => p.Rule).Distinct()];
        Finding[] found = [.. report.Findings.Where(f => persistenceRules.Contains(f.RuleId))];
        Assert.Equal(planted.Length, found.Length);
        foreach ((string rule, string technique, string names) in planted)
        {
            Finding f = Assert.Single(found, f => f.RuleId == rule && f.Summary.Contains(names, StringComparison.Ordinal));
            Assert.Equal(technique, f.Technique);
            Assert.NotEmpty(f.Evidence);
        }
        Assert.All(found.Where(f => f.RuleId is "CM-WIN-022" or "CM-WIN-023" || f.Summary.Contains("IRP_MJ_DEVICE_CONTROL", StringComparison.Ordinal)),
            f => Assert.Contains(RegistryScenario.HookDriver, f.Summary, StringComparison.Ordinal));
        Finding info = Assert.Single(report.Findings, f => f.RuleId == "CM-WIN-017");
        Assert.Equal(Severity.Info, info.Severity);
        Assert.Contains("SecurityHealth", info.Summary, StringComparison.Ordinal);
        Assert.DoesNotContain(report.Findings, f => f.RuleId == "CM-WIN-019");
        Finding service = report.Findings.Single(f => f.RuleId == "CM-WIN-018" && f.Summary.Contains("EvilSvc", StringComparison.Ordinal));
        PersistenceRow row = Assert.IsType<PersistenceRow>(Assert.Single(service.Evidence).Row);
        Assert.Equal((PersistenceKind.Service, @"%SystemRoot%\Temp\evilsvc.exe"), (row.Kind, row.Data));
        Assert.All(report.Runs.Where(r => r.Plugin is "windows.registry.persistence" or "windows.ssdt" or "windows.callbacks" or "windows.lsadump" or "windows.svcscan" or "windows.driverirp" or "windows.mftscan"),
            r => Assert.Null(r.Error));
        // hashdump and cachedump never run: no account hash reaches the case.
        Assert.DoesNotContain(report.Runs, r => r.Plugin is "windows.hashdump" or "windows.cachedump");
    }
}
