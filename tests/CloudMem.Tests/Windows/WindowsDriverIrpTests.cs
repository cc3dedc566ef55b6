using CloudMem.Engine.Windows;
using CloudMem.ImageBuilder;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.driverirp on the "registry" scenario's driver objects: \Driver\Tcpip (IRP_MJ_DEVICE_CONTROL hooked into the
/// hidden rootkit.sys, IRP_MJ_INTERNAL_DEVICE_CONTROL pointing at pool code in no module, unused majors at the kernel's
/// IopInvalidDeviceRequest) and \Driver\rootkit (all in the hidden driver), against the manifest, on Windows 7/10/11.
/// </summary>
public sealed class WindowsDriverIrpTests(WindowsRegistryImages images, ITestOutputHelper output) : IClassFixture<WindowsRegistryImages>
{
    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Driverirp_resolves_every_dispatch_pointer_and_flags_the_hooks(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        List<LaidOutDriverObject> truth = built.Manifest.DriverObjects!;
        WindowsKernel kernel = WindowsRegistryImages.Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsDriverIrp.DriverIrp(kernel);
            foreach (DriverIrpRow row in report.Rows.Where(r => r.Suspicious))
            {
                output.WriteLine(row.ToString());
            }
            Assert.Empty(report.Notes);
            var expected = truth.SelectMany(d => d.Irps.Select((address, irp) => (d.Physical, (string?)d.Name, d.Start, (ulong)d.Size, irp, address, d.Modules[irp])))
                .OrderBy(r => r.Physical).ThenBy(r => r.irp);
            Assert.Equal(expected, report.Rows.Select(r => (r.Offset, r.Driver, r.DriverStart, r.DriverSize, r.Irp, r.Address, r.Module)).OrderBy(r => r.Offset).ThenBy(r => r.Irp));
            Assert.Equal(56, report.Rows.Count);

            var tcpip = report.Rows.Where(r => r.Driver == @"\Driver\Tcpip").ToList();
            DriverIrpRow hook = tcpip[RegistryScenario.IrpHookMajor];
            LaidOutDriver rootkit = Assert.Single(built.Manifest.Drivers, d => d.Name == RegistryScenario.HookDriver);
            Assert.Equal(("IRP_MJ_DEVICE_CONTROL", rootkit.Base + RegistryScenario.IrpHookOffset, "rootkit.sys", (bool?)false, true, true),
                (hook.IrpName, hook.Address, hook.Module, hook.ModuleOnList, hook.OutsideDriver, hook.Suspicious));
            DriverIrpRow noModule = tcpip[15];
            Assert.Equal(((string?)null, (bool?)null, true, true), (noModule.Module, noModule.ModuleOnList, noModule.OutsideDriver, noModule.Suspicious));
            // Unused majors go to the kernel's IopInvalidDeviceRequest: outside the driver but not suspicious.
            DriverIrpRow unused = tcpip[1];
            Assert.Equal(("ntoskrnl.exe", "IopInvalidDeviceRequest", true, false), (unused.Module, unused.Symbol, unused.OutsideDriver, unused.Suspicious));
            Assert.Equal([RegistryScenario.IrpHookMajor, 15], tcpip.Where(r => r.Suspicious).Select(r => r.Irp));
            // The rootkit's own table: inside its driver, but the driver is hidden.
            Assert.All(report.Rows.Where(r => r.Driver == @"\Driver\rootkit" && r.Module == "rootkit.sys"), r => Assert.True(r.Suspicious && !r.OutsideDriver));
        }
    }
}
