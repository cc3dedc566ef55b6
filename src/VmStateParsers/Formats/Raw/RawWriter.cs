using CloudMem.VmStateParsers.Writing;

namespace CloudMem.VmStateParsers.Formats.Raw;

/// <summary>Padded raw: file offset = physical address; holes are zero and left sparse on disk.</summary>
public sealed class RawWriter : ICaptureWriter
{
    /// <inheritdoc />
    public string Name => "raw";

    /// <inheritdoc />
    public string Description => "padded raw (file offset = physical address, holes sparse)";

    /// <inheritdoc />
    public string? VerifyAs => RawFormat.Id;

    /// <inheritdoc />
    public WriterStatistics Write(IPhysicalMemory memory, WriterContext context)
    {
        OutputFile file = context.CreateMain();
        file.Reserve((long)memory.MaxAddress);
        ulong written = 0;
        ulong unreadable = SequentialReader.ForEachBlock(memory, (pa, data) =>
        {
            file.WriteAt((long)pa, data);
            written += (ulong)data.Length;
            context.ReportWritten(written);
            return true;
        }, cancellationToken: context.CancellationToken);
        return new WriterStatistics(memory.Runs.Count, unreadable);
    }
}
