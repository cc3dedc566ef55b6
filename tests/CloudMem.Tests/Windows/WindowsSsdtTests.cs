using CloudMem.Engine.Windows;
using CloudMem.ImageBuilder;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.ssdt on the "registry" scenario's KiServiceTable (400 entries at the kernel's Nt* functions, entry 38 hooked
/// into the unlinked rootkit.sys placed within 128 MiB of the kernel) and windows.callbacks on its notification arrays
/// (callbacks in the kernel, tcpip.sys and the hidden driver), against the manifest, on Windows 7/10/11 layouts.
/// </summary>
public sealed class WindowsSsdtTests(WindowsRegistryImages images, ITestOutputHelper output) : IClassFixture<WindowsRegistryImages>
{
    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Ssdt_resolves_every_entry_and_flags_the_hook_into_the_hidden_driver(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        List<LaidOutServiceEntry> truth = built.Manifest.ServiceTable!;
        WindowsKernel kernel = WindowsRegistryImages.Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsSsdt.Ssdt(kernel);
            foreach (SsdtRow row in report.Rows.Where(r => r.Hooked))
            {
                output.WriteLine(row.ToString());
            }
            output.WriteLine(string.Join("\n", report.Notes));
            Assert.Equal(["win32k's shadow table (W32pServiceTable) is not read: it lives in session space, mapped only in GUI processes"], report.Notes);
            Assert.Equal(truth.Select(t => (t.Index, t.Target, t.Symbol)), report.Rows.Select(r => (r.Index, r.Address, r.Symbol)));
            Assert.All(report.Rows.Where(r => r.Index != RegistryScenario.HookedService),
                r => Assert.Equal(("ntoskrnl.exe", (bool?)true, false, (string?)null), (r.Module, r.ModuleOnList, r.Hooked, r.Doubt)));
            SsdtRow hooked = Assert.Single(report.Rows, r => r.Hooked);
            LaidOutDriver rootkit = Assert.Single(built.Manifest.Drivers, d => d.Name == RegistryScenario.HookDriver);
            Assert.Equal((RegistryScenario.HookedService, rootkit.Base + RegistryScenario.HookOffset, "rootkit.sys", (bool?)false, (string?)null),
                (hooked.Index, hooked.Address, hooked.Module, hooked.ModuleOnList, hooked.Symbol));
            Assert.Equal(400, report.Rows.Count);
        }
    }

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    [InlineData(WindowsSymbols.Win11)]
    public void Callbacks_resolve_every_registered_routine_and_flag_those_in_the_hidden_driver(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid);
        List<LaidOutCallback> truth = built.Manifest.Callbacks!;
        WindowsKernel kernel = WindowsRegistryImages.Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsCallbacks.Callbacks(kernel);
            WindowsRegistryImages.Print(output, report);
            Assert.Empty(report.Notes);
            Assert.Equal(truth.Select(t => (t.Array, t.Slot, t.Block, t.Function, (string?)t.Driver, (bool?)(t.Driver != RegistryScenario.HookDriver), t.Driver == RegistryScenario.HookDriver)),
                report.Rows.Select(r => (r.Type, r.Slot, r.Block, r.Callback, r.Module, r.ModuleOnList, r.Suspicious)));
            Assert.StartsWith(kernel.Types.Symbols.Where(s => s.Value <= 0x1000).MaxBy(s => s.Value).Key, report.Rows[0].Symbol, StringComparison.Ordinal);
            Assert.All(report.Rows.Skip(1), r => Assert.Null(r.Symbol));
        }
    }

    [SkippableFact]
    public void An_image_without_a_service_table_has_no_entries_and_the_limit_is_checked()
    {
        WindowsRegistryImages.Built built = images.Get(WindowsSymbols.Win10);
        (string _, Engine.Symbols.TypeModel types) = WindowsSymbols.Load(WindowsSymbols.Win10);
        WindowsKernel clean = WindowsRegistryImages.Open(built, out RunMappedMemory file);
        using (file)
        {
            Assert.True(clean.TryGetSymbol("KiServiceLimit", out ulong limit));
            Assert.True(clean.Kernel.TryTranslate(limit, out Engine.Paging.Translation t, out _));
            using var huge = new OverlayMemory(file);
            huge.PatchUInt64(t.PhysicalAddress, 0x7FFFFFFF);
            var report = WindowsSsdt.Ssdt(Engine.Windows.WindowsKernel.Open(huge, new Engine.Symbols.SymbolStore([built.Root])));
            Assert.Empty(report.Rows);
            Assert.Equal("KiServiceLimit 2147483647 is above the limit of 4096; not a service count (garbage or wrong symbols)", Assert.Single(report.Notes));
            Assert.NotNull(types);
        }
    }
}
