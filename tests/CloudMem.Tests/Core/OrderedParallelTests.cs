using CloudMem.Engine.Core;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Core;

/// <summary>Per-process work spread over threads keeps the items' order and the exceptions' own types.</summary>
public sealed class OrderedParallelTests(WindowsAttackImages images) : IClassFixture<WindowsAttackImages>
{
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(7)]
    public void Results_come_in_item_order_on_any_thread_count(int threads)
    {
        int[] items = [.. Enumerable.Range(0, 1000)];
        int[] squares = OrderedParallel.Map(items, i =>
        {
            Thread.SpinWait((1000 - i) * 10);   // later items finish first
            return i * i;
        }, CancellationToken.None, threads);
        Assert.Equal(items.Select(i => i * i), squares);
    }

    [Fact]
    public void The_first_failure_in_item_order_is_rethrown_unwrapped()
    {
        int[] items = [.. Enumerable.Range(0, 400)];
        var thrown = Assert.Throws<InvalidDataException>(() => OrderedParallel.Map(items, i => i is 150 or 300
            ? throw new InvalidDataException($"item {i}")
            : i, CancellationToken.None, 4));
        Assert.Contains("item 150", thrown.Message, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Dlllist_cmdline_and_envars_rows_match_a_one_process_at_a_time_walk()
    {
        WindowsAttackImages.Built image = images.Get(WindowsSymbols.Win10);
        using RunMappedMemory memory = CaptureOpener.Open(image.Raw);
        WindowsKernel kernel = WindowsKernel.Open(memory, new SymbolStore([image.Root]));
        (List<WindowsProcess> processes, _) = WindowsProcesses.List(kernel);
        Assert.True(processes.Count >= 4, $"{processes.Count} processes");

        var dlls = WindowsPeb.DllList(kernel, degreeOfParallelism: 4).Rows;
        var expectedDlls = processes.SelectMany(p => WindowsPeb.Modules(kernel, p).Modules.Select((m, i) =>
            new WindowsDll(p.Pid, p.ImageFileName, m.Base, m.Size, m.Name, m.Path, i, WindowsProcesses.FileTime(m.LoadTime)))).ToList();
        Assert.NotEmpty(expectedDlls);
        Assert.Equal(expectedDlls, dlls);

        var lines = WindowsPeb.CmdLine(kernel, degreeOfParallelism: 4).Rows;
        Assert.Equal(processes.Select(p => WindowsPeb.CommandLine(kernel, p).CommandLine), lines.Select(r => r.Args));

        var envars = WindowsPeb.Envars(kernel, degreeOfParallelism: 4).Rows;
        Assert.Equal(processes.SelectMany(p => WindowsPeb.Environment(kernel, p).Variables.Select(v => (p.Pid, v.Key, v.Value))),
            envars.Select(r => (r.Pid, r.Variable, r.Value)));
    }
}
