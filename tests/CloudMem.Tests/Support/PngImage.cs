using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;

namespace CloudMem.Tests.Support;

/// <summary>
/// A small PNG reader for checking screenshots: validates the signature and every chunk's CRC, inflates IDAT and undoes
/// the five row filters (8-bit RGB/RGBA, non-interlaced: what Chromium writes), so a test can tell a real page from a
/// blank one.
/// </summary>
public sealed class PngImage
{
    private static readonly byte[] s_signature = [0x89, (byte)'P', (byte)'N', (byte)'G', 0x0D, 0x0A, 0x1A, 0x0A];

    private PngImage(int width, int height, int channels, byte[] pixels)
    {
        Width = width;
        Height = height;
        Channels = channels;
        Pixels = pixels;
    }

    public int Width { get; }

    public int Height { get; }

    /// <summary>3 (RGB) or 4 (RGBA).</summary>
    public int Channels { get; }

    /// <summary>Unfiltered pixel bytes, row after row.</summary>
    public byte[] Pixels { get; }

    /// <summary>Distinct RGB colours in the image.</summary>
    public int DistinctColours()
    {
        var colours = new HashSet<int>();
        for (int i = 0; i + Channels <= Pixels.Length; i += Channels)
        {
            colours.Add(Pixels[i] << 16 | Pixels[i + 1] << 8 | Pixels[i + 2]);
        }
        return colours.Count;
    }

    /// <summary>The share of pixels whose colour differs from the top-left pixel (the page background).</summary>
    public double ShareNotLikeCorner()
    {
        int differ = 0;
        for (int i = 0; i + Channels <= Pixels.Length; i += Channels)
        {
            if (Pixels[i] != Pixels[0] || Pixels[i + 1] != Pixels[1] || Pixels[i + 2] != Pixels[2])
            {
                differ++;
            }
        }
        return (double)differ / ((long)Width * Height);
    }

    /// <summary>Reads a PNG. Throws <see cref="InvalidDataException"/> with the reason when it is not a valid one.</summary>
    public static PngImage Read(byte[] png)
    {
        if (png.Length < 8 || !png.AsSpan(0, 8).SequenceEqual(s_signature))
        {
            throw new InvalidDataException("not a PNG: bad signature");
        }
        int width = 0, height = 0, channels = 0;
        using var idat = new MemoryStream();
        bool ended = false;
        for (int at = 8; at < png.Length && !ended;)
        {
            if (at + 12 > png.Length)
            {
                throw new InvalidDataException($"chunk header at {at} runs past the end");
            }
            int length = checked((int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at)));
            string type = Encoding.ASCII.GetString(png, at + 4, 4);
            if (at + 12L + length > png.Length)
            {
                throw new InvalidDataException($"{type} chunk at {at} runs past the end");
            }
            ReadOnlySpan<byte> data = png.AsSpan(at + 8, length);
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at + 8 + length));
            if (CloudMem.VmStateParsers.Codecs.Crc32.Compute(png.AsSpan(at + 4, 4 + length)) != crc)
            {
                throw new InvalidDataException($"{type} chunk at {at}: CRC mismatch");
            }
            switch (type)
            {
                case "IHDR":
                    width = checked((int)BinaryPrimitives.ReadUInt32BigEndian(data));
                    height = checked((int)BinaryPrimitives.ReadUInt32BigEndian(data[4..]));
                    if (data[8] != 8 || data[9] is not (2 or 6) || data[12] != 0)
                    {
                        throw new InvalidDataException($"IHDR: only 8-bit RGB/RGBA non-interlaced images are read (depth {data[8]}, colour type {data[9]}, interlace {data[12]})");
                    }
                    channels = data[9] == 2 ? 3 : 4;
                    break;
                case "IDAT":
                    idat.Write(data);
                    break;
                case "IEND":
                    ended = true;
                    break;
            }
            at += 12 + length;
        }
        if (width <= 0 || height <= 0 || !ended)
        {
            throw new InvalidDataException($"no IHDR with a size ({width}x{height}) or no IEND");
        }
        int stride = width * channels;
        byte[] raw = new byte[(long)(stride + 1) * height];
        idat.Position = 0;
        using (var inflate = new ZLibStream(idat, CompressionMode.Decompress))
        {
            inflate.ReadExactly(raw);
        }
        byte[] pixels = new byte[(long)stride * height];
        for (int y = 0; y < height; y++)
        {
            byte filter = raw[y * (stride + 1)];
            for (int x = 0; x < stride; x++)
            {
                int value = raw[y * (stride + 1) + 1 + x];
                int left = x >= channels ? pixels[y * stride + x - channels] : 0;
                int up = y > 0 ? pixels[(y - 1) * stride + x] : 0;
                int upLeft = x >= channels && y > 0 ? pixels[(y - 1) * stride + x - channels] : 0;
                pixels[y * stride + x] = (byte)(filter switch
                {
                    0 => value,
                    1 => value + left,
                    2 => value + up,
                    3 => value + (left + up) / 2,
                    4 => value + Paeth(left, up, upLeft),
                    _ => throw new InvalidDataException($"row {y}: unknown filter {filter}"),
                });
            }
        }
        return new PngImage(width, height, channels, pixels);
    }

    private static int Paeth(int a, int b, int c)
    {
        int p = a + b - c;
        int pa = Math.Abs(p - a), pb = Math.Abs(p - b), pc = Math.Abs(p - c);
        return pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
    }
}
