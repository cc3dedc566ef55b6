using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;

namespace CloudMem.Engine.Windows;

/// <summary>A kernel notification callback (windows.callbacks).</summary>
/// <param name="Type">The kernel array or list holding it (PspCreateProcessNotifyRoutine, PspCreateThreadNotifyRoutine, PspLoadImageNotifyRoutine, CallbackListHead).</param>
/// <param name="Slot">Its slot in the array (its position on the list).</param>
/// <param name="Block">The _EX_CALLBACK_ROUTINE_BLOCK (the slot's _EX_FAST_REF without its reference bits), or the registry callback's list entry.</param>
/// <param name="Callback">The function called.</param>
/// <param name="Module">The module holding it (listed, or found only by the 'MmLd' pool scan), null when none.</param>
/// <param name="ModuleOnList">Whether that module is on PsLoadedModuleList (null when no module holds the callback).</param>
/// <param name="Symbol">The kernel symbol at the callback when it is in the kernel image.</param>
/// <param name="Suspicious">The callback is in no module, or in one hidden from PsLoadedModuleList.</param>
/// <param name="Doubt">Why the slot's block did not read.</param>
public sealed record CallbackRow(string Type, int Slot, [property: Hex] ulong Block, [property: Hex] ulong Callback, string? Module, bool? ModuleOnList,
    string? Symbol, bool Suspicious, string? Doubt);

/// <summary>
/// windows.callbacks: the process-creation, thread-creation and image-load notification arrays. Each slot is an
/// _EX_FAST_REF (the low 4 bits are a reference count) to an _EX_CALLBACK_ROUTINE_BLOCK (rundown reference, function,
/// context); every non-empty slot's function is resolved like an SSDT target. The arrays hold 64 entries (the image-load
/// array 8 before Windows 8, told by NtBuildNumber). Registry callbacks (CmRegisterCallback/Ex, Vista and later) are the
/// entries of the CallbackListHead list (LIST_ENTRY at 0, cookie at 0x18, function at 0x28, altitude at 0x30), walked
/// when CmpCallBackCount is not zero. Object (ObRegisterCallbacks) and bug-check callbacks are not read.
/// </summary>
public static class WindowsCallbacks
{
    private const int FunctionOffset = 8;
    private const int WideArray = 64, NarrowArray = 8, Windows8 = 9200;

    /// <summary>Offset of the function in a registry callback's list entry (CM_CALLBACK_CONTEXT_BLOCKEX: Link, then the object and cookie).</summary>
    public const int RegistryCallbackFunction = 0x28;

    /// <summary>The most registry callbacks Windows allows (CmRegisterCallbackEx refuses more).</summary>
    private const int MaxRegistryCallbacks = 100;

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("windows.callbacks",
            "Process, thread and image-load notification callbacks resolved to module and symbol; callbacks in hidden or no modules flagged",
            TargetOs.Windows),
            (c, a, ct) => Callbacks(c.Windows(ct), ct, c.Progress));

    /// <summary>windows.callbacks.</summary>
    public static RowsReport<CallbackRow> Callbacks(WindowsKernel kernel, CancellationToken ct = default, IProgressSink? progress = null)
    {
        ArgumentNullException.ThrowIfNull(kernel);
        (List<WindowsModule> modules, List<string> notes) = WindowsModules.List(kernel, ct);
        var owners = new WindowsSsdt.KernelAddressOwners(kernel, modules, ct, progress);
        AddressSpace space = kernel.Kernel;
        int imageSlots = NarrowArray;
        if (kernel.TryGetSymbol("NtBuildNumber", out ulong buildVa) && space.TryReadUInt32(buildVa, out uint build))
        {
            imageSlots = (build & 0xFFFF) >= Windows8 ? WideArray : NarrowArray;
        }
        else
        {
            notes.Add($"NtBuildNumber does not read: the image-load array is read as {NarrowArray} slots (Windows 7's size)");
        }
        var rows = new List<CallbackRow>();
        foreach ((string array, int slots) in new[] { ("PspCreateProcessNotifyRoutine", WideArray), ("PspCreateThreadNotifyRoutine", WideArray), ("PspLoadImageNotifyRoutine", imageSlots) })
        {
            if (!kernel.TryGetSymbol(array, out ulong arrayVa))
            {
                notes.Add($"{kernel.Types.Source} has no {array} symbol");
                continue;
            }
            for (int slot = 0; slot < slots; slot++)
            {
                ct.ThrowIfCancellationRequested();
                if (!space.TryReadUInt64(arrayVa + (ulong)slot * 8, out ulong fastRef))
                {
                    notes.Add($"{array} slot {slot} at 0x{arrayVa + (ulong)slot * 8:X} does not read; the rest of the array is skipped");
                    break;
                }
                ulong block = fastRef & ~0xFUL;
                if (block == 0)
                {
                    continue;
                }
                if (!WindowsObjectManager.IsKernelPointer(block) || !space.TryReadUInt64(block + FunctionOffset, out ulong function))
                {
                    rows.Add(new CallbackRow(array, slot, block, 0, null, null, null, false, $"callback block 0x{block:X} does not read"));
                    continue;
                }
                (string? module, bool? onList, string? symbol, _) = owners.Resolve(function);
                rows.Add(new CallbackRow(array, slot, block, function, module, onList, symbol, onList != true, null));
            }
        }
        RegistryCallbacks(kernel, owners, rows, notes, ct);
        return new RowsReport<CallbackRow>("windows.callbacks", rows, notes);
    }

    /// <summary>The CmRegisterCallback(Ex) list: one row per entry of CallbackListHead, when CmpCallBackCount says there are any.</summary>
    private static void RegistryCallbacks(WindowsKernel kernel, WindowsSsdt.KernelAddressOwners owners, List<CallbackRow> rows, List<string> notes, CancellationToken ct)
    {
        const string list = "CallbackListHead";
        if (!kernel.TryGetSymbol(list, out ulong head) || !kernel.TryGetSymbol("CmpCallBackCount", out ulong countVa))
        {
            notes.Add($"{kernel.Types.Source} has no {list}/CmpCallBackCount symbols: registry callbacks are not read");
            return;
        }
        AddressSpace space = kernel.Kernel;
        if (!space.TryReadUInt32(countVa, out uint count))
        {
            notes.Add($"CmpCallBackCount at 0x{countVa:X} does not read: registry callbacks are not read");
            return;
        }
        if (count == 0)
        {
            return;
        }
        ListWalk walk = KernelLists.Circular(space, head, "registry callbacks", MaxRegistryCallbacks, KernelLists.IsKernelAddress, cancellationToken: ct);
        if (walk.Note is not null)
        {
            notes.Add(walk.Note);
        }
        for (int slot = 0; slot < walk.Entries.Count; slot++)
        {
            ulong entry = walk.Entries[slot];
            if (!space.TryReadUInt64(entry + RegistryCallbackFunction, out ulong function))
            {
                rows.Add(new CallbackRow(list, slot, entry, 0, null, null, null, false, $"registry callback entry 0x{entry:X} does not read"));
                continue;
            }
            (string? module, bool? onList, string? symbol, _) = owners.Resolve(function);
            rows.Add(new CallbackRow(list, slot, entry, function, module, onList, symbol, onList != true, null));
        }
        if (walk.Entries.Count != count)
        {
            notes.Add($"CmpCallBackCount says {count} registry callbacks; {walk.Entries.Count} are on {list}");
        }
    }
}
