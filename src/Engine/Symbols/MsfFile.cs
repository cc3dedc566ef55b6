using System.Buffers.Binary;
using System.Text;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Symbols;

/// <summary>A PDB that cannot be read; <see cref="SymbolFormatException.Offset"/> is the file offset of the problem.</summary>
public sealed class PdbFormatException(string source, string structure, long offset, string problem)
    : SymbolFormatException(source, new FormatError("PDB", structure, offset, problem));

/// <summary>On-disk layout of the MSF 7.00 container (the "big MSF" every PDB since Visual C++ 7.0 uses).</summary>
internal static class MsfLayout
{
    /// <summary>"Microsoft C/C++ MSF 7.00\r\n" 0x1A "DS" and three NULs: 32 bytes.</summary>
    public static ReadOnlySpan<byte> Magic => "Microsoft C/C++ MSF 7.00\r\n\u001aDS\0\0\0"u8;

    /// <summary>The older (VC 6 and before) container, which this reader refuses by name.</summary>
    public static ReadOnlySpan<byte> OldMagic => "Microsoft C/C++ program database 2.00\r\n"u8;

    // superblock, after the 32-byte magic
    public const int BlockSizeOffset = 0x20;
    public const int FreeBlockMapOffset = 0x24;      // ignored: we never write
    public const int NumBlocksOffset = 0x28;
    public const int NumDirectoryBytesOffset = 0x2C;
    public const int UnknownOffset = 0x30;
    public const int BlockMapAddrOffset = 0x34;      // block holding the block numbers of the stream directory
    public const int SuperBlockSize = 0x38;

    /// <summary>A stream size meaning "no stream" (deleted or never written).</summary>
    public const uint NilStreamSize = 0xFFFFFFFF;
}

/// <summary>
/// The stream directory of an MSF 7.00 file (the container of a PDB): block size, block count and, per stream, its
/// size and blocks. Every value read from the file is checked before use; problems raise a
/// <see cref="PdbFormatException"/> naming the structure and its file offset.
/// </summary>
/// <remarks>Immutable after <see cref="Open"/>; the file bytes are only read.</remarks>
internal sealed class MsfFile
{
    private readonly ReadOnlyMemory<byte> _file;
    private readonly uint[] _sizes;
    private readonly int[][] _blocks;

    private MsfFile(ReadOnlyMemory<byte> file, string source, int blockSize, int blockCount, uint[] sizes, int[][] blocks)
    {
        _file = file;
        Source = source;
        BlockSize = blockSize;
        BlockCount = blockCount;
        _sizes = sizes;
        _blocks = blocks;
    }

    /// <summary>The name used in messages, e.g. "PDB ntkrnlmp.pdb".</summary>
    public string Source { get; }

    /// <summary>Bytes per block (512 to 32768, a power of two).</summary>
    public int BlockSize { get; }

    /// <summary>Blocks the superblock declares.</summary>
    public int BlockCount { get; }

    /// <summary>Streams in the directory.</summary>
    public int StreamCount => _sizes.Length;

    /// <summary>True when the file starts with the MSF 7.00 signature.</summary>
    public static bool IsMsf(ReadOnlySpan<byte> head) => head.StartsWith(MsfLayout.Magic);

    /// <summary>Reads and checks the superblock and the stream directory.</summary>
    public static MsfFile Open(ReadOnlyMemory<byte> file, string source, ParserLimits limits)
    {
        ReadOnlySpan<byte> span = file.Span;
        if (!IsMsf(span))
        {
            string problem = span.StartsWith(MsfLayout.OldMagic)
                ? "a PDB 2.00 file (Visual C++ 6 and older) is not supported; only MSF 7.00"
                : span.Length < MsfLayout.Magic.Length && MsfLayout.Magic.StartsWith(span)
                    ? $"the file ends after {span.Length} bytes, inside the signature"
                    : "no 'Microsoft C/C++ MSF 7.00' signature: not a PDB";
            throw new PdbFormatException(source, "superblock.magic", 0, problem);
        }
        if (span.Length < MsfLayout.SuperBlockSize)
        {
            throw new PdbFormatException(source, "superblock", 0, $"needs {MsfLayout.SuperBlockSize} bytes but the file has {span.Length}");
        }
        if (span.Length > limits.MaxPdbBytes)
        {
            throw new PdbFormatException(source, "superblock", 0, $"the file has {span.Length} bytes, more than the limit of {limits.MaxPdbBytes}");
        }
        uint blockSize = BinaryPrimitives.ReadUInt32LittleEndian(span[MsfLayout.BlockSizeOffset..]);
        if (blockSize < 512 || blockSize > 32768 || (blockSize & (blockSize - 1)) != 0)
        {
            throw new PdbFormatException(source, "superblock.BlockSize", MsfLayout.BlockSizeOffset, $"{blockSize} is not a power of two from 512 to 32768");
        }
        uint blockCount = BinaryPrimitives.ReadUInt32LittleEndian(span[MsfLayout.NumBlocksOffset..]);
        if (blockCount < 2 || (ulong)blockCount * blockSize > (ulong)limits.MaxPdbBytes)
        {
            throw new PdbFormatException(source, "superblock.NumBlocks", MsfLayout.NumBlocksOffset,
                $"{blockCount} blocks of {blockSize} bytes is not between 2 blocks and the limit of {limits.MaxPdbBytes} bytes");
        }
        uint directoryBytes = BinaryPrimitives.ReadUInt32LittleEndian(span[MsfLayout.NumDirectoryBytesOffset..]);
        if (directoryBytes < 4 || directoryBytes > (ulong)blockCount * blockSize)
        {
            throw new PdbFormatException(source, "superblock.NumDirectoryBytes", MsfLayout.NumDirectoryBytesOffset,
                $"directory of {directoryBytes} bytes is not between 4 and the {(ulong)blockCount * blockSize} bytes of the file's blocks");
        }
        uint blockMap = BinaryPrimitives.ReadUInt32LittleEndian(span[MsfLayout.BlockMapAddrOffset..]);
        if (blockMap == 0 || blockMap >= blockCount)
        {
            throw new PdbFormatException(source, "superblock.BlockMapAddr", MsfLayout.BlockMapAddrOffset,
                $"block {blockMap} is not a block of the file (1 to {blockCount - 1})");
        }
        int size = (int)blockSize;
        int count = (int)blockCount;
        int directoryBlocks = (int)((directoryBytes + blockSize - 1) / blockSize);
        if (directoryBlocks * 4L > blockSize)
        {
            throw new PdbFormatException(source, "superblock.NumDirectoryBytes", MsfLayout.NumDirectoryBytesOffset,
                $"a directory of {directoryBytes} bytes needs {directoryBlocks} blocks, more than one block map block of {blockSize} bytes can list");
        }
        var partial = new MsfFile(file, source, size, count, [], []);
        long mapOffset = (long)blockMap * size;
        if (mapOffset + directoryBlocks * 4L > span.Length)
        {
            throw new PdbFormatException(source, "block map", mapOffset, $"block {blockMap} lies past the end of the file (0x{span.Length:X} bytes): truncated");
        }
        int[] directoryBlockList = new int[directoryBlocks];
        for (int i = 0; i < directoryBlocks; i++)
        {
            uint block = BinaryPrimitives.ReadUInt32LittleEndian(span[(int)(mapOffset + i * 4L)..]);
            if (block == 0 || block >= blockCount)
            {
                throw new PdbFormatException(source, $"block map[{i}]", mapOffset + i * 4L, $"block {block} is not a block of the file (1 to {blockCount - 1})");
            }
            directoryBlockList[i] = (int)block;
        }
        MsfStream directory = partial.Assemble("stream directory", directoryBlockList, (int)directoryBytes);
        return partial.ReadDirectory(directory, limits);
    }

    private MsfFile ReadDirectory(MsfStream directory, ParserLimits limits)
    {
        uint streams = directory.U32(0, "stream directory.NumStreams");
        if (streams > limits.MaxPdbStreams)
        {
            throw directory.Fail("stream directory.NumStreams", 0, $"{streams} streams, more than the limit of {limits.MaxPdbStreams}");
        }
        if (4 + streams * 4L > directory.Length)
        {
            throw directory.Fail("stream directory.NumStreams", 0, $"{streams} stream sizes do not fit in the directory of {directory.Length} bytes");
        }
        uint[] sizes = new uint[streams];
        int[][] blocks = new int[streams][];
        long totalBlocks = 0;
        for (int i = 0; i < streams; i++)
        {
            uint size = directory.U32(4 + i * 4, $"stream directory.StreamSizes[{i}]");
            if (size == MsfLayout.NilStreamSize)
            {
                size = 0;
            }
            long used = (size + (long)BlockSize - 1) / BlockSize;
            totalBlocks += used;
            if (totalBlocks > BlockCount)
            {
                throw directory.Fail($"stream directory.StreamSizes[{i}]", 4 + i * 4,
                    $"stream {i} of {size} bytes brings the streams to {totalBlocks} blocks, more than the {BlockCount} blocks of the file");
            }
            sizes[i] = size;
        }
        int position = 4 + (int)streams * 4;
        for (int i = 0; i < streams; i++)
        {
            int used = (int)((sizes[i] + (long)BlockSize - 1) / BlockSize);
            int[] list = new int[used];
            for (int j = 0; j < used; j++)
            {
                uint block = directory.U32(position, $"stream directory.blocks of stream {i}");
                if (block == 0 || block >= BlockCount)
                {
                    throw directory.Fail($"stream directory.blocks of stream {i}[{j}]", position, $"block {block} is not a block of the file (1 to {BlockCount - 1})");
                }
                list[j] = (int)block;
                position += 4;
            }
            blocks[i] = list;
        }
        return new MsfFile(_file, Source, BlockSize, BlockCount, sizes, blocks);
    }

    /// <summary>Size in bytes of stream <paramref name="index"/> (0 for nil streams).</summary>
    public int StreamSize(int index) => index >= 0 && index < _sizes.Length ? (int)_sizes[index] : 0;

    /// <summary>True when the directory holds stream <paramref name="index"/> with at least one byte.</summary>
    public bool HasStream(int index) => StreamSize(index) > 0;

    /// <summary>The bytes of stream <paramref name="index"/>, copied block by block into one buffer.</summary>
    /// <param name="index">The stream number.</param>
    /// <param name="name">What the stream is, for messages (e.g. "TPI stream").</param>
    public MsfStream ReadStream(int index, string name)
    {
        if (index < 0 || index >= _sizes.Length)
        {
            throw new PdbFormatException(Source, name, -1, $"stream {index} is not in the directory ({_sizes.Length} streams)");
        }
        return Assemble($"{name} (stream {index})", _blocks[index], (int)_sizes[index]);
    }

    private MsfStream Assemble(string name, int[] blocks, int length)
    {
        ReadOnlySpan<byte> file = _file.Span;
        byte[] data = new byte[length];
        for (int i = 0; i < blocks.Length; i++)
        {
            long offset = (long)blocks[i] * BlockSize;
            int take = Math.Min(BlockSize, length - i * BlockSize);
            if (offset + take > file.Length)
            {
                throw new PdbFormatException(Source, name, offset,
                    $"block {blocks[i]} lies past the end of the file (0x{file.Length:X} bytes): truncated");
            }
            file.Slice((int)offset, take).CopyTo(data.AsSpan(i * BlockSize));
        }
        return new MsfStream(Source, name, data, blocks, BlockSize);
    }
}

/// <summary>
/// One stream of an MSF file reassembled into a buffer, with bounded little-endian reads that raise a
/// <see cref="PdbFormatException"/> giving the file offset of the failing byte.
/// </summary>
internal sealed class MsfStream(string source, string name, byte[] data, int[] blocks, int blockSize)
{
    /// <summary>The stream's bytes.</summary>
    public ReadOnlySpan<byte> Span => data;

    /// <summary>Length in bytes.</summary>
    public int Length => data.Length;

    /// <summary>What the stream is, e.g. "TPI stream (stream 2)".</summary>
    public string Name => name;

    /// <summary>The file offset of byte <paramref name="position"/> of the stream (the end of the last block when past the end).</summary>
    public long FileOffset(long position)
    {
        if (blocks.Length == 0)
        {
            return -1;
        }
        if (position < 0)
        {
            position = 0;
        }
        long block = position / blockSize;
        if (block >= blocks.Length)
        {
            return (long)blocks[^1] * blockSize + Math.Min(blockSize, data.Length - (long)(blocks.Length - 1) * blockSize);
        }
        return (long)blocks[block] * blockSize + position % blockSize;
    }

    /// <summary>An exception for a problem at <paramref name="position"/> of this stream.</summary>
    public PdbFormatException Fail(string structure, long position, string problem) => new(source, structure, FileOffset(position), problem);

    private void Need(long position, int bytes, string structure)
    {
        if (position < 0 || position > data.Length - (long)bytes)
        {
            throw Fail(structure, Math.Min(Math.Max(position, 0), data.Length),
                $"needs {bytes} bytes at stream offset 0x{position:X} but the {name} has {data.Length}");
        }
    }

    public byte U8(long position, string structure)
    {
        Need(position, 1, structure);
        return data[position];
    }

    public ushort U16(long position, string structure)
    {
        Need(position, 2, structure);
        return BinaryPrimitives.ReadUInt16LittleEndian(data.AsSpan((int)position));
    }

    public uint U32(long position, string structure)
    {
        Need(position, 4, structure);
        return BinaryPrimitives.ReadUInt32LittleEndian(data.AsSpan((int)position));
    }

    public int I32(long position, string structure) => unchecked((int)U32(position, structure));

    public ReadOnlySpan<byte> Bytes(long position, int length, string structure)
    {
        Need(position, length, structure);
        return data.AsSpan((int)position, length);
    }

    /// <summary>A NUL-terminated UTF-8 string starting at <paramref name="position"/> that must end before <paramref name="end"/>.</summary>
    /// <param name="position">First byte.</param>
    /// <param name="end">The terminator must lie before this stream offset.</param>
    /// <param name="structure">Names the string in messages.</param>
    /// <param name="maxLength">Longest accepted string, in bytes.</param>
    /// <param name="next">The offset after the terminator.</param>
    public string CString(long position, long end, string structure, int maxLength, out long next)
    {
        end = Math.Min(end, data.Length);
        if (position < 0 || position >= end)
        {
            throw Fail(structure, Math.Min(Math.Max(position, 0), data.Length), "the name runs past the end of its record");
        }
        ReadOnlySpan<byte> rest = data.AsSpan((int)position, (int)(end - position));
        int length = rest.IndexOf((byte)0);
        if (length < 0)
        {
            throw Fail(structure, position, "the name has no NUL terminator inside its record");
        }
        if (length > maxLength)
        {
            throw Fail(structure, position, $"name of {length} bytes, longer than the limit of {maxLength}");
        }
        next = position + length + 1;
        return Encoding.UTF8.GetString(rest[..length]);
    }
}
