using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Runtime.Intrinsics;

namespace CloudMem.Engine.Windows;

/// <summary>
/// Finds 16-byte pool slots whose 32-bit tag is one of a few wanted tags, 128 bytes (eight slots, four 256-bit
/// vectors) per test where the CPU has 256-bit vectors (the tag's lane in each slot is masked in, so only aligned tags
/// count), else one slot at a time. Immutable; safe to share between threads.
/// </summary>
internal sealed class PoolTagSearch
{
    private const int Slot = 16;
    private readonly uint[] _tags;
    private readonly Vector256<uint>[] _vectors;
    private readonly Vector256<uint> _laneMask;
    private readonly int _tagOffset;
    private readonly int _headerSize;
    private readonly bool _vectorised;

    /// <summary>Receives the index of a slot whose tag matched (the slot's bytes start there).</summary>
    public delegate void Hit(ReadOnlySpan<byte> data, int at);

    public PoolTagSearch(uint[] tags, int tagOffset, int headerSize)
    {
        _tags = tags;
        _tagOffset = tagOffset;
        _headerSize = headerSize;
        _vectors = [.. tags.Select(Vector256.Create)];
        int lane = tagOffset / 4;
        _laneMask = Vector256.Create(Enumerable.Range(0, 8).Select(i => i % 4 == lane ? uint.MaxValue : 0u).ToArray());
        _vectorised = Vector256.IsHardwareAccelerated && tagOffset % 4 == 0 && tagOffset + 4 <= Slot && headerSize <= Slot && tags.Length is > 0 and <= 8;
    }

    /// <summary>Calls <paramref name="hit"/> for every slot start in [<paramref name="from"/>, <paramref name="to"/>)
    /// (stepping 16 from <paramref name="from"/>) whose tag is wanted; every such slot's header lies within
    /// <paramref name="data"/>.</summary>
    public void Find(ReadOnlySpan<byte> data, int from, int to, Hit hit)
    {
        to = Math.Min(to, data.Length - Math.Max(_headerSize, _tagOffset + 4) + 1);
        int at = from;
        if (_vectorised)
        {
            ref byte start = ref MemoryMarshal.GetReference(data);
            // Four vectors (eight slots, two cache lines) per test while no wanted tag is near: the common case, so
            // the loop runs at memory bandwidth; a hit checks those eight slots one by one, and the last slots of the
            // range (fewer than eight) are checked one by one below.
            Vector256<uint> first = _vectors[0], second = _vectors[Math.Min(1, _vectors.Length - 1)];
            for (; at + 7 * Slot < to && at + 8 * Slot <= data.Length; at += 8 * Slot)
            {
                Vector256<uint> a = Vector256.LoadUnsafe(ref start, (nuint)at).AsUInt32();
                Vector256<uint> b = Vector256.LoadUnsafe(ref start, (nuint)(at + 32)).AsUInt32();
                Vector256<uint> c = Vector256.LoadUnsafe(ref start, (nuint)(at + 64)).AsUInt32();
                Vector256<uint> d = Vector256.LoadUnsafe(ref start, (nuint)(at + 96)).AsUInt32();
                Vector256<uint> any = Vector256.Equals(a, first) | Vector256.Equals(a, second)
                    | Vector256.Equals(b, first) | Vector256.Equals(b, second)
                    | Vector256.Equals(c, first) | Vector256.Equals(c, second)
                    | Vector256.Equals(d, first) | Vector256.Equals(d, second);
                for (int t = 2; t < _vectors.Length; t++)
                {
                    Vector256<uint> tag = _vectors[t];
                    any |= Vector256.Equals(a, tag) | Vector256.Equals(b, tag) | Vector256.Equals(c, tag) | Vector256.Equals(d, tag);
                }
                if ((any & _laneMask) != Vector256<uint>.Zero)
                {
                    for (int k = 0; k < 8; k++)
                    {
                        Check(data, at + k * Slot, hit);
                    }
                }
            }
        }
        for (; at < to; at += Slot)
        {
            Check(data, at, hit);
        }
    }

    private void Check(ReadOnlySpan<byte> data, int at, Hit hit)
    {
        if (Array.IndexOf(_tags, BinaryPrimitives.ReadUInt32LittleEndian(data[(at + _tagOffset)..])) >= 0)
        {
            hit(data, at);
        }
    }
}
