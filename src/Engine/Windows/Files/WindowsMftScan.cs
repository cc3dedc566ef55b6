using System.Buffers.Binary;
using System.Runtime.CompilerServices;
using CloudMem.Engine.Core;
using CloudMem.Engine.Output;
using CloudMem.Engine.Plugins;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Windows.Files;

/// <summary>One $FILE_NAME of an MFT record found in physical memory (windows.mftscan); a record without one gives a row with no name.</summary>
/// <param name="Offset">Physical address of the FILE record.</param>
/// <param name="Record">The record number (the MFT index).</param>
/// <param name="Sequence">Its sequence number.</param>
/// <param name="InUse">The record's in-use flag (clear: a deleted file whose record is not reused yet).</param>
/// <param name="Directory">The directory flag.</param>
/// <param name="LinkCount">Hard links.</param>
/// <param name="Name">The $FILE_NAME's name.</param>
/// <param name="Namespace">Its name space (Win32, DOS, both, POSIX).</param>
/// <param name="ParentRecord">The parent directory's record number.</param>
/// <param name="Created">$FILE_NAME creation time.</param>
/// <param name="Modified">$FILE_NAME modification time.</param>
/// <param name="MftModified">$FILE_NAME MFT-entry change time.</param>
/// <param name="Accessed">$FILE_NAME access time.</param>
/// <param name="SiCreated">$STANDARD_INFORMATION creation time (what Explorer shows; user code can set it).</param>
/// <param name="SiModified">$STANDARD_INFORMATION modification time.</param>
/// <param name="SiMftModified">$STANDARD_INFORMATION MFT-entry change time.</param>
/// <param name="SiAccessed">$STANDARD_INFORMATION access time.</param>
/// <param name="DataSize">The unnamed $DATA's size (resident: its content length; non-resident: the real size).</param>
/// <param name="DataResident">Whether that data is inside the record.</param>
/// <param name="Timestomped">$STANDARD_INFORMATION's creation time is earlier than $FILE_NAME's (a common sign of time stomping).</param>
/// <param name="Doubt">A torn sector (fixup mismatch) or an attribute that runs outside the record.</param>
public sealed record MftScanRow([property: Hex] ulong Offset, uint Record, ushort Sequence, bool InUse, bool Directory, ushort LinkCount, string? Name,
    MftNamespace? Namespace, ulong? ParentRecord, DateTimeOffset? Created, DateTimeOffset? Modified, DateTimeOffset? MftModified, DateTimeOffset? Accessed,
    DateTimeOffset? SiCreated, DateTimeOffset? SiModified, DateTimeOffset? SiMftModified, DateTimeOffset? SiAccessed, long? DataSize, bool? DataResident,
    bool Timestomped, string? Doubt);

/// <summary>
/// windows.mftscan: NTFS FILE records found anywhere in physical memory (the MFT's pages in the cache, records in
/// freed buffers): every 1024-byte boundary starting with "FILE" whose header is consistent (update sequence array
/// sized for the record, allocated size 1024 or 4096, used size inside it) is parsed by <see cref="MftRecord.Parse"/>
/// with its fixups applied and checked. Needs no kernel or symbols.
/// </summary>
public static class WindowsMftScan
{
    private const int Step = 1024, Chunk = 1 << 20;

#pragma warning disable CA2255 // a module initializer is how each plugin file registers itself (no reflection scan)
    [ModuleInitializer]
#pragma warning restore CA2255
    internal static void Register()
        => PluginRegistry.Register(new PluginInfo("windows.mftscan",
            "NTFS MFT FILE records found by scanning physical memory: record number, $FILE_NAME names and times, $STANDARD_INFORMATION times, $DATA size; fixups checked",
            TargetOs.Windows),
            (c, a, ct) => MftScan(c.Memory, ct));

    /// <summary>windows.mftscan over <paramref name="memory"/>.</summary>
    public static RowsReport<MftScanRow> MftScan(IPhysicalMemory memory, CancellationToken ct = default)
    {
        ArgumentNullException.ThrowIfNull(memory);
        var rows = new List<MftScanRow>();
        var notes = new List<string>();
        byte[] buffer = new byte[Chunk];
        foreach (PhysicalRun run in memory.Runs)
        {
            ulong first = (run.PhysicalAddress + Step - 1) & ~(ulong)(Step - 1), end = run.PhysicalAddress + run.Length;
            for (ulong chunk = first; chunk < end; chunk += Chunk)
            {
                ct.ThrowIfCancellationRequested();
                int got = memory.Read(chunk, buffer.AsSpan(0, (int)Math.Min((ulong)Chunk, end - chunk)));
                for (int at = 0; at + Step <= got; at += Step)
                {
                    if (BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(at)) != MftRecord.Signature)
                    {
                        continue;
                    }
                    uint allocated = BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(at + 0x1C));
                    if (allocated is not (1024 or 4096) || at + (int)allocated > got || MftRecord.Parse(buffer.AsSpan(at, (int)allocated)) is not { } record)
                    {
                        continue;
                    }
                    if (rows.Count >= AnalysisLimits.Default.MaxScanResults)
                    {
                        notes.Add($"more than {AnalysisLimits.Default.MaxScanResults} MFT rows; scan stopped");
                        return new RowsReport<MftScanRow>("windows.mftscan", rows, notes);
                    }
                    rows.AddRange(Rows(chunk + (ulong)at, record));
                }
            }
        }
        return new RowsReport<MftScanRow>("windows.mftscan", rows, notes);
    }

    private static IEnumerable<MftScanRow> Rows(ulong offset, MftRecord r)
    {
        string? doubt = r.FixupError is null ? r.AttributeError : r.AttributeError is null ? r.FixupError : $"{r.FixupError}; {r.AttributeError}";
        NtfsTimes si = r.Standard ?? new NtfsTimes(null, null, null, null);
        IEnumerable<NtfsFileName?> names = r.Names.Count == 0 ? new NtfsFileName?[] { null } : r.Names.Cast<NtfsFileName?>();
        foreach (NtfsFileName? n in names)
        {
            bool stomped = si.Created is { } s && n?.Times.Created is { } f && s < f;
            yield return new MftScanRow(offset, r.Record, r.Sequence, r.InUse, r.Directory, r.LinkCount, n?.Name, n?.Namespace, n?.ParentRecord,
                n?.Times.Created, n?.Times.Modified, n?.Times.MftModified, n?.Times.Accessed, si.Created, si.Modified, si.MftModified, si.Accessed,
                r.DataSize, r.DataResident, stomped, doubt);
        }
    }
}
