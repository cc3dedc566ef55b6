using System.Buffers.Binary;
using System.Text;
using CloudMem.Engine.Core;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Plugins;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>One record of the kernel log (linux.dmesg).</summary>
/// <param name="Seq">The record's sequence number (printk_info.seq).</param>
/// <param name="TimestampSeconds">Seconds after boot (ts_nsec), to the microsecond as dmesg prints it.</param>
/// <param name="Level">Log level 0 (emerg) to 7 (debug), or null when the type model has no level field.</param>
/// <param name="Caller">"T123" (task id) or "C0" (CPU, when logged outside task context).</param>
/// <param name="Text">The message (multi-line messages keep their newlines).</param>
/// <param name="Subsystem">For a dev_printk record, the device's subsystem (dev_printk_info.subsystem), else null.</param>
/// <param name="Device">For a dev_printk record, the device ("+acpi:PNP0A03:00", "b8:0"...), else null.</param>
/// <param name="Doubt">Why the record may be incomplete or wrong (descriptor not finalized, data block of another
/// record), or null.</param>
public sealed record LinuxDmesgRecord(ulong Seq, double TimestampSeconds, int? Level, string Caller, string Text,
    string? Subsystem, string? Device, string? Doubt);

/// <summary>
/// Reads the kernel log from the lockless printk ring buffer of Linux 5.10+ (the <c>prb</c> pointer): descriptors
/// walked from tail_id to head_id, each with its printk_info and its text block in the text data ring.
/// </summary>
public static class LinuxDmesg
{
    private const int StateShift = 62;
    private const ulong IdMask = (1UL << StateShift) - 1;

    private sealed class Layout(TypeModel t)
    {
        private int O(string s, string f) => t.OptionalOffset(s, f);
        private int S(string s) => t.TryGetSize(s, out int n) ? n : -1;
        public int CountBits => O("printk_ringbuffer", "desc_ring.count_bits");
        public int Descs => O("printk_ringbuffer", "desc_ring.descs");
        public int Infos => O("printk_ringbuffer", "desc_ring.infos");
        public int HeadId => O("printk_ringbuffer", "desc_ring.head_id");
        public int TailId => O("printk_ringbuffer", "desc_ring.tail_id");
        public int SizeBits => O("printk_ringbuffer", "text_data_ring.size_bits");
        public int Data => O("printk_ringbuffer", "text_data_ring.data");
        public int DescSize => S("prb_desc");
        public int StateVar => O("prb_desc", "state_var");
        public int Begin => O("prb_desc", "text_blk_lpos.begin");
        public int Next => O("prb_desc", "text_blk_lpos.next");
        public int InfoSize => S("printk_info");
        public int Seq => O("printk_info", "seq");
        public int TsNsec => O("printk_info", "ts_nsec");
        public int TextLen => O("printk_info", "text_len");
        public int CallerId => O("printk_info", "caller_id");
        public FieldInfo? Level => t.FindField("printk_info", "level");
        public FieldInfo? Subsystem => t.FindField("printk_info", "dev_info.subsystem");
        public FieldInfo? Device => t.FindField("printk_info", "dev_info.device");
    }

    /// <summary>The log records, oldest first, and notes about anything doubtful.</summary>
    public static (List<LinuxDmesgRecord> Records, List<string> Notes) Read(LinuxContext context, CancellationToken ct = default)
    {
        var notes = new List<string>();
        var rows = new List<LinuxDmesgRecord>();
        var l = new Layout(context.Types);
        IVirtualMemory k = context.Kernel.Kernel;
        if (!context.Kernel.Symbols.TryGetAddress("prb", out ulong prbSymbol))
        {
            notes.Add("the kernel has no 'prb' symbol: not a 5.10+ printk ring buffer (older log_buf kernels are not supported)");
            return (rows, notes);
        }
        int[] needed = [l.CountBits, l.Descs, l.Infos, l.HeadId, l.TailId, l.SizeBits, l.Data, l.DescSize, l.StateVar, l.Begin, l.Next, l.InfoSize, l.Seq, l.TsNsec, l.TextLen];
        if (needed.Any(v => v < 0) || l.DescSize == 0 || l.InfoSize == 0)
        {
            notes.Add($"the type information ({context.Types.Source}) lacks printk_ringbuffer, prb_desc or printk_info fields");
            return (rows, notes);
        }
        // prb is a pointer (to printk_rb_static, or printk_rb_dynamic once the log buffer was enlarged).
        if (!k.TryReadUInt64(prbSymbol, out ulong prb) || prb == 0)
        {
            notes.Add($"prb at 0x{prbSymbol:X} is not readable");
            return (rows, notes);
        }
        if (!k.TryReadUInt32(prb + (ulong)l.CountBits, out uint countBits) || !k.TryReadUInt64(prb + (ulong)l.Descs, out ulong descs)
            || !k.TryReadUInt64(prb + (ulong)l.Infos, out ulong infos) || !k.TryReadUInt64(prb + (ulong)l.HeadId, out ulong headId)
            || !k.TryReadUInt64(prb + (ulong)l.TailId, out ulong tailId) || !k.TryReadUInt32(prb + (ulong)l.SizeBits, out uint sizeBits)
            || !k.TryReadUInt64(prb + (ulong)l.Data, out ulong data))
        {
            notes.Add($"the printk_ringbuffer at 0x{prb:X} is not readable");
            return (rows, notes);
        }
        AnalysisLimits limits = AnalysisLimits.Default;
        if (countBits > limits.MaxPrintkCountBits || sizeBits > limits.MaxPrintkSizeBits || sizeBits < 4)
        {
            notes.Add($"the printk_ringbuffer at 0x{prb:X} has implausible sizes (count_bits {countBits}, size_bits {sizeBits}): not read");
            return (rows, notes);
        }
        int count = 1 << (int)countBits;
        int size = 1 << (int)sizeBits;
        byte[] descBytes = ReadAll(k, descs, (long)count * l.DescSize, "descriptor array", notes);
        byte[] infoBytes = ReadAll(k, infos, (long)count * l.InfoSize, "printk_info array", notes);
        byte[] text = ReadAll(k, data, size, "text data ring", notes);
        headId &= IdMask;
        tailId &= IdMask;
        ulong span = (headId - tailId) & IdMask;
        if (span >= (ulong)count)
        {
            notes.Add($"tail_id 0x{tailId:X} and head_id 0x{headId:X} are {span} apart, more than the {count} descriptors: walking the last {count} (smeared capture?)");
            tailId = (headId - (ulong)count + 1) & IdMask;
            span = (ulong)count - 1;
        }
        int skipped = 0;
        ulong firstSkipped = 0;
        FieldInfo? levelField = l.Level, subsystemField = l.Subsystem, deviceField = l.Device;
        for (ulong i = 0; i <= span; i++)
        {
            ct.ThrowIfCancellationRequested();
            ulong id = (tailId + i) & IdMask;
            int index = (int)(id & (ulong)(count - 1));
            ReadOnlySpan<byte> desc = descBytes.AsSpan(index * l.DescSize, l.DescSize);
            ulong stateVar = BinaryPrimitives.ReadUInt64LittleEndian(desc[l.StateVar..]);
            if ((stateVar & IdMask) != id)
            {
                // Reserved but not yet written, or already recycled for a newer record.
                firstSkipped = skipped++ == 0 ? id : firstSkipped;
                continue;
            }
            int state = (int)(stateVar >> StateShift);
            ulong begin = BinaryPrimitives.ReadUInt64LittleEndian(desc[l.Begin..]);
            ulong next = BinaryPrimitives.ReadUInt64LittleEndian(desc[l.Next..]);
            if (state == 3 && (begin & 1) != 0)
            {
                // A recycled descriptor without text (the ring's initial placeholder): nothing to show.
                continue;
            }
            string? doubt = state switch
            {
                0 => "descriptor reserved: being written when captured",
                1 => "descriptor committed, not finalized",
                3 => "descriptor reusable: its data may have been overwritten",
                _ => null,
            };
            ReadOnlySpan<byte> info = infoBytes.AsSpan(index * l.InfoSize, l.InfoSize);
            ulong seq = BinaryPrimitives.ReadUInt64LittleEndian(info[l.Seq..]);
            ulong ts = BinaryPrimitives.ReadUInt64LittleEndian(info[l.TsNsec..]);
            int textLen = BinaryPrimitives.ReadUInt16LittleEndian(info[l.TextLen..]);
            uint callerId = l.CallerId >= 0 ? BinaryPrimitives.ReadUInt32LittleEndian(info[l.CallerId..]) : 0;
            int? level = levelField is null ? null : (int)ReadBits(info, levelField);
            string message = Text(text, sizeBits, id, begin, next, textLen, ref doubt);
            string caller = (callerId & 0x80000000) != 0 ? $"C{callerId & 0x7FFFFFFF}" : $"T{callerId}";
            rows.Add(new LinuxDmesgRecord(seq, Math.Round(ts / 1000 / 1e6, 6), level, caller, message,
                CharArray(info, subsystemField), CharArray(info, deviceField), doubt));
        }
        if (skipped > 0)
        {
            notes.Add($"{skipped} descriptor(s) between tail and head hold another id (being rewritten, or a smeared capture), first id 0x{firstSkipped:X}: skipped");
        }
        return (rows, notes);
    }

    /// <summary>linux.dmesg.</summary>
    public static RowsReport<LinuxDmesgRecord> Dmesg(LinuxContext context, CancellationToken ct = default)
    {
        (List<LinuxDmesgRecord> rows, List<string> notes) = Read(context, ct);
        return new RowsReport<LinuxDmesgRecord>("linux.dmesg", rows, notes);
    }

    // A data block is the writer's id (unsigned long) then the text. Logical positions (lpos) count bytes written
    // since boot: index = lpos mod size, wraps = lpos / size. A block that would cross the end of the ring is
    // placed at index 0 instead, and then begin is in the previous wrap.
    internal static string Text(byte[] ring, uint sizeBits, ulong id, ulong begin, ulong next, int textLen, ref string? doubt)
    {
        if ((begin & 1) != 0 || begin == next || ring.Length == 0)
        {
            // FAILED_LPOS / NO_LPOS: a record without text.
            return "";
        }
        ulong size = 1UL << (int)sizeBits;
        ulong beginWrap = begin >> (int)sizeBits, nextWrap = next >> (int)sizeBits;
        int blockAt, blockLength;
        if (beginWrap == nextWrap && begin < next)
        {
            blockAt = (int)(begin & (size - 1));
            blockLength = (int)(next - begin);
        }
        else if (beginWrap + 1 == nextWrap)
        {
            blockAt = 0;
            blockLength = (int)(next & (size - 1));
        }
        else
        {
            doubt = Join(doubt, $"text block 0x{begin:X}..0x{next:X} is not a valid position pair");
            return "";
        }
        if (blockLength < 8 || (ulong)blockAt + (ulong)blockLength > size)
        {
            doubt = Join(doubt, $"text block 0x{begin:X}..0x{next:X} is too short");
            return "";
        }
        ulong blockId = BinaryPrimitives.ReadUInt64LittleEndian(ring.AsSpan(blockAt)) & IdMask;
        if (blockId != id)
        {
            doubt = Join(doubt, $"text block belongs to id 0x{blockId:X}: overwritten");
        }
        int length = Math.Min(textLen, blockLength - 8);
        return Encoding.UTF8.GetString(ring, blockAt + 8, length);
    }

    private static string? CharArray(ReadOnlySpan<byte> info, FieldInfo? field)
    {
        if (field is null || field.Offset >= info.Length)
        {
            return null;
        }
        int size = Math.Min(field.Type.Resolve().Size, info.Length - field.Offset);
        ReadOnlySpan<byte> bytes = info.Slice(field.Offset, size);
        int nul = bytes.IndexOf((byte)0);
        bytes = nul >= 0 ? bytes[..nul] : bytes;
        return bytes.IsEmpty ? null : Encoding.UTF8.GetString(bytes);
    }

    private static string Join(string? a, string b) => a is null ? b : a + "; " + b;

    private static ulong ReadBits(ReadOnlySpan<byte> bytes, FieldInfo field)
    {
        int byteOffset = field.Offset;
        int bitSize = field.IsBitfield ? field.BitSize : Math.Min(64, field.Type.Resolve().Size * 8);
        int shift = (int)(field.BitOffset % 8);
        Span<byte> eight = stackalloc byte[8];
        eight.Clear();
        bytes.Slice(byteOffset, Math.Min(8, bytes.Length - byteOffset)).CopyTo(eight);
        ulong raw = BinaryPrimitives.ReadUInt64LittleEndian(eight) >> shift;
        return bitSize >= 64 ? raw : raw & ((1UL << bitSize) - 1);
    }

    private static byte[] ReadAll(IVirtualMemory k, ulong va, long length, string what, List<string> notes)
    {
        byte[] buffer = new byte[length];
        // Page by page: a page missing from the capture leaves zeros but does not hide the rest.
        int missing = 0;
        for (long at = 0; at < length;)
        {
            int chunk = (int)Math.Min(4096 - (long)((va + (ulong)at) & 4095), length - at);
            if (k.Read(va + (ulong)at, buffer.AsSpan((int)at, chunk)) != chunk)
            {
                missing++;
            }
            at += chunk;
        }
        if (missing > 0)
        {
            notes.Add($"{what} at 0x{va:X}: {missing} page(s) not readable (zeros used)");
        }
        return buffer;
    }
}
