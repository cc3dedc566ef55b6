using System.Buffers.Binary;
using System.Text;

namespace CloudMem.Tests.Support;

/// <summary>
/// Writes an MSF 7.00 container (the PDB file format) around given stream contents, for tests that need PDBs with
/// chosen or corrupted streams: superblock, free block map blocks 1-2, streams block by block, the directory and the
/// block map block. Streams given as null are written as nil (size 0xFFFFFFFF).
/// </summary>
internal static class MsfBuilder
{
    public static byte[] Write(IReadOnlyList<byte[]?> streams, int blockSize = 4096)
    {
        var blocks = new List<byte[]> { new byte[blockSize], new byte[blockSize], new byte[blockSize] };   // superblock, FPM 1, FPM 2
        var lists = new List<List<uint>>();
        foreach (byte[]? stream in streams)
        {
            var list = new List<uint>();
            for (int offset = 0; stream is not null && offset < stream.Length; offset += blockSize)
            {
                byte[] block = new byte[blockSize];
                stream.AsSpan(offset, Math.Min(blockSize, stream.Length - offset)).CopyTo(block);
                list.Add((uint)blocks.Count);
                blocks.Add(block);
            }
            lists.Add(list);
        }
        var directory = new List<byte>();
        void U32(uint value)
        {
            Span<byte> word = stackalloc byte[4];
            BinaryPrimitives.WriteUInt32LittleEndian(word, value);
            directory.AddRange(word.ToArray());
        }
        U32((uint)streams.Count);
        foreach (byte[]? stream in streams)
        {
            U32(stream is null ? 0xFFFFFFFF : (uint)stream.Length);
        }
        foreach (List<uint> list in lists)
        {
            list.ForEach(U32);
        }
        byte[] directoryBytes = [.. directory];
        var directoryBlocks = new List<uint>();
        for (int offset = 0; offset < directoryBytes.Length; offset += blockSize)
        {
            byte[] block = new byte[blockSize];
            directoryBytes.AsSpan(offset, Math.Min(blockSize, directoryBytes.Length - offset)).CopyTo(block);
            directoryBlocks.Add((uint)blocks.Count);
            blocks.Add(block);
        }
        byte[] map = new byte[blockSize];
        for (int i = 0; i < directoryBlocks.Count; i++)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(map.AsSpan(i * 4), directoryBlocks[i]);
        }
        uint mapBlock = (uint)blocks.Count;
        blocks.Add(map);
        byte[] super = blocks[0];
        Encoding.ASCII.GetBytes("Microsoft C/C++ MSF 7.00\r\n\u001aDS\0\0\0").CopyTo(super, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(super.AsSpan(0x20), (uint)blockSize);
        BinaryPrimitives.WriteUInt32LittleEndian(super.AsSpan(0x24), 1);
        BinaryPrimitives.WriteUInt32LittleEndian(super.AsSpan(0x28), (uint)blocks.Count);
        BinaryPrimitives.WriteUInt32LittleEndian(super.AsSpan(0x2C), (uint)directoryBytes.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(super.AsSpan(0x34), mapBlock);
        return [.. blocks.SelectMany(b => b)];
    }
}
