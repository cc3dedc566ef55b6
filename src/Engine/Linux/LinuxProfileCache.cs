using System.IO.Hashing;
using CloudMem.Engine.Capture;
using CloudMem.Engine.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Linux;

/// <summary>
/// The profile-cache entry of one Linux kernel build, keyed by its banner: the decoded kallsyms (names, type letters and
/// kallsyms_offsets as stored, with where the token table and the relative base sit relative to the banner) and the
/// BTF type model (with where the blob sits relative to the banner, its length and the XxHash128 of its ends).
/// </summary>
/// <remarks>
/// On a later command only what changes with each boot is read from the capture: kallsyms_relative_base (the KASLR
/// slide) and the BTF blob, whose hash must match; the first 256 bytes of the token table must be the recorded ones.
/// Anything that does not match is a miss: the kernel is searched as without a cache and the entry rewritten.
/// </remarks>
internal sealed class LinuxProfileCache(ProfileCache cache, KernelBanner banner)
{
    private const string Kind = "linux";
    private const int TokenProbeBytes = 256;
    private const int MaxBtfBytes = 64 << 20;

    /// <summary>The banner the entry is for (where this capture has it).</summary>
    public KernelBanner Banner => banner;
    private string Key => "linux|" + banner.Text;

    /// <summary>The BTF types of the entry, when its kallsyms matched and the blob in this capture is the recorded one.</summary>
    public TypeModel? Types { get; private set; }

    /// <summary>The kallsyms of the entry, checked against this capture; null on a miss.</summary>
    public Kallsyms? Kallsyms { get; private set; }

    /// <summary>Reads and checks the entry for the capture's banner; false on any miss.</summary>
    public bool TryLoad(IPhysicalMemory physical)
    {
        if (!cache.TryRead(Kind, Key, out CacheReader reader))
        {
            return false;
        }
        try
        {
            ulong at = banner.PhysicalAddress;
            ulong tokenTable = at + (ulong)reader.Int64();
            ulong relativeBaseAt = at + (ulong)reader.Int64();
            ReadOnlySpan<byte> probe = reader.Span(reader.Count(1));
            byte[] now = new byte[probe.Length];
            if (physical.Read(tokenTable, now) != probe.Length || !probe.SequenceEqual(now)
                || !physical.TryReadUInt64(relativeBaseAt, out ulong relativeBase))
            {
                return false;
            }
            int count = reader.Count(5);
            int[] stored = new int[count];
            System.Runtime.InteropServices.MemoryMarshal.Cast<byte, int>(reader.Span(4 * count)).CopyTo(stored);
            byte[] types = reader.Span(count).ToArray();
            StringTable names = StringTable.Read(reader);
            NameIndex index = NameIndex.Read(reader, names);
            Kallsyms = Kallsyms.FromCache(names, types, stored, index, relativeBase, relativeBaseAt, tokenTable);
            if (Kallsyms is null)
            {
                return false;
            }
            ulong btfAt = at + (ulong)reader.Int64();
            int btfLength = reader.Int32();
            ReadOnlySpan<byte> hash = reader.Span(16);
            if (btfLength is > 0 and <= MaxBtfBytes && BlobHash(physical, btfAt, btfLength) is { } found && hash.SequenceEqual(found))
            {
                Types = TypeModelCodec.Decode(reader, BtfSource(btfAt));
            }
            return true;
        }
        catch (InvalidDataException)
        {
            Kallsyms = null;
            Types = null;
            return false;
        }
    }

    /// <summary>Where a BTF blob was found, as <see cref="TypeModel.Source"/> says it.</summary>
    public static string BtfSource(ulong at) => $"BTF in memory at physical 0x{at:X}";

    /// <summary>Stores the entry for what a search found (kallsyms from memory, BTF blob and its types).</summary>
    public void Save(IPhysicalMemory physical, Kallsyms kallsyms, ulong btfAt, byte[] btfBlob, TypeModel types)
    {
        if (!BitConverter.IsLittleEndian)
        {
            return;   // the stored offsets are written and read as little-endian memory
        }
        var writer = new CacheWriter();
        ulong at = banner.PhysicalAddress;
        writer.Int64((long)(kallsyms.TokenTablePhysicalAddress - at));
        writer.Int64((long)(kallsyms.RelativeBasePhysicalAddress - at));
        byte[] probe = new byte[TokenProbeBytes];
        int got = physical.Read(kallsyms.TokenTablePhysicalAddress, probe);
        writer.Int32(got);
        writer.Bytes(probe.AsSpan(0, got));
        IReadOnlyList<(string Name, char Type, ulong Address)> symbols = kallsyms.Symbols;
        writer.Int32(symbols.Count);
        writer.Bytes(System.Runtime.InteropServices.MemoryMarshal.AsBytes(kallsyms.StoredOffsets.AsSpan()));
        foreach ((_, char type, _) in symbols)
        {
            writer.Byte((byte)type);
        }
        StringTable.Write(writer, symbols.Select(s => s.Name).ToList());
        NameIndex.Write(writer, symbols.Select((s, i) => (s.Name, i, i)));
        writer.Int64((long)(btfAt - at));
        writer.Int32(btfBlob.Length);
        writer.Bytes(SampleHash(btfBlob.Length, SampleOf(btfBlob)));
        TypeModelCodec.Encode(types, writer);
        cache.Write(Kind, Key, banner.Text.Trim(), writer.ToArray());
    }

    private const int BlobSample = 64 << 10;

    /// <summary>
    /// The check that the BTF blob is the recorded one: XxHash128 of its length and its first and last 64 KiB (the
    /// whole blob when it is smaller). The entry is already keyed by the banner and its kallsyms token table was
    /// compared; hashing all 5 MB of BTF again on every command would be most of what a warm command reads from a
    /// remote capture.
    /// </summary>
    private static byte[]? BlobHash(IPhysicalMemory physical, ulong at, int length)
    {
        byte[] sample = new byte[Math.Min(length, 2 * BlobSample)];
        bool read = length <= 2 * BlobSample
            ? physical.Read(at, sample) == length
            : physical.Read(at, sample.AsSpan(0, BlobSample)) == BlobSample
              && physical.Read(at + (ulong)(length - BlobSample), sample.AsSpan(BlobSample)) == BlobSample;
        return read ? SampleHash(length, sample) : null;
    }

    private static byte[] SampleOf(byte[] blob)
        => blob.Length <= 2 * BlobSample ? blob : [.. blob.AsSpan(0, BlobSample), .. blob.AsSpan(blob.Length - BlobSample)];

    private static byte[] SampleHash(int length, ReadOnlySpan<byte> sample)
    {
        var hash = new XxHash128();
        Span<byte> size = stackalloc byte[4];
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(size, length);
        hash.Append(size);
        hash.Append(sample);
        return hash.GetCurrentHash();
    }
}
