using System.Buffers.Binary;
using System.Text;

namespace CloudMem.Tests.Support;

/// <summary>
/// Builds VMware checkpoint containers (.vmss/.vmsn) byte by byte for parser tests, independently of our writer:
/// header, group descriptors, then each group's tags (ended by a zero tag word unless told not to).
/// </summary>
public static class CheckpointBuilder
{
    public const uint Normal = 0xBED2BED2;

    /// <summary>An inline tag: word ((indices &lt;&lt; 6) | size, name length), name, u32 indices, value.</summary>
    public static byte[] Tag(string name, uint[] indices, byte[] value)
    {
        var output = new MemoryStream();
        output.WriteByte((byte)((indices.Length << 6) | value.Length));
        output.WriteByte((byte)name.Length);
        output.Write(Encoding.ASCII.GetBytes(name));
        foreach (uint index in indices)
        {
            output.Write(U32(index));
        }
        output.Write(value);
        return output.ToArray();
    }

    public static byte[] Tag(string name, uint value, params uint[] indices) => Tag(name, indices, U32(value));

    /// <summary>A block ("large data") tag: size 63 (62 when compressed), diskSize and memSize of <paramref name="width"/> bytes, padLen, padding, data.</summary>
    public static byte[] Block(string name, uint[] indices, byte[] data, int padding, int width = 8, bool compressed = false)
    {
        var output = new MemoryStream();
        output.WriteByte((byte)((indices.Length << 6) | (compressed ? 62 : 63)));
        output.WriteByte((byte)name.Length);
        output.Write(Encoding.ASCII.GetBytes(name));
        foreach (uint index in indices)
        {
            output.Write(U32(index));
        }
        byte[] size = width == 8 ? U64((ulong)data.Length) : U32((uint)data.Length);
        output.Write(size);
        output.Write(size);
        output.Write([(byte)padding, (byte)(padding >> 8)]);
        output.Write(new byte[padding]);
        output.Write(data);
        return output.ToArray();
    }

    /// <summary>The memory group's region tags.</summary>
    public static byte[][] Regions(params (uint Ppn, uint PageNum, uint Pages)[] regions)
    {
        var tags = new List<byte[]> { Tag("regionsCount", (uint)regions.Length) };
        for (uint i = 0; i < regions.Length; i++)
        {
            tags.Add(Tag("regionPageNum", regions[i].PageNum, i));
            tags.Add(Tag("regionPPN", regions[i].Ppn, i));
            tags.Add(Tag("regionSize", regions[i].Pages, i));
        }
        return [.. tags];
    }

    /// <summary>The container: header, descriptors (position, size of each tag area), tag areas in order.</summary>
    public static byte[] Build(uint magic, params (string Name, byte[][] Tags)[] groups) => Build(magic, terminate: true, groups);

    public static byte[] Build(uint magic, bool terminate, params (string Name, byte[][] Tags)[] groups)
    {
        var areas = groups.Select(g => g.Tags.SelectMany(t => t).Concat(terminate ? new byte[2] : []).ToArray()).ToList();
        var output = new MemoryStream();
        output.Write(U32(magic));
        output.Write(U32(0));
        output.Write(U32((uint)groups.Length));
        long position = 12 + 80L * groups.Length;
        for (int g = 0; g < groups.Length; g++)
        {
            byte[] descriptor = new byte[80];
            Encoding.ASCII.GetBytes(groups[g].Name).CopyTo(descriptor, 0);
            BinaryPrimitives.WriteInt64LittleEndian(descriptor.AsSpan(64), position);
            BinaryPrimitives.WriteInt64LittleEndian(descriptor.AsSpan(72), areas[g].Length);
            output.Write(descriptor);
            position += areas[g].Length;
        }
        foreach (byte[] area in areas)
        {
            output.Write(area);
        }
        return output.ToArray();
    }

    public static byte[] U32(uint value)
    {
        byte[] bytes = new byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(bytes, value);
        return bytes;
    }

    public static byte[] U64(ulong value)
    {
        byte[] bytes = new byte[8];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, value);
        return bytes;
    }
}
