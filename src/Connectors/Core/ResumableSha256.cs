using System.Buffers.Binary;
using System.Globalization;
using System.Numerics;
using System.Runtime.InteropServices;

namespace CloudMem.Connectors.Core;

/// <summary>
/// SHA-256 (FIPS 180-4) whose running state can be written down as one line of text and taken up again in another
/// process: a workflow step that must end before its time limit (Lambda's 15 minutes) hashes part of an object, saves
/// <see cref="Export"/> with the offset it reached, and the next step continues with <see cref="Import(string)"/> from there.
/// The platform's hashers (IncrementalHash, OpenSSL behind it) cannot hand their state out, so the state (the eight
/// words, the length, the bytes short of a block) is kept here; whole blocks go through OpenSSL's SHA-256 block
/// function when libcrypto is loadable (Linux, where .NET's own cryptography uses it; hardware-assisted), through a
/// managed compression function otherwise. Both give the same words.
/// </summary>
/// <remarks>Not thread-safe. Tested against <see cref="System.Security.Cryptography.SHA256"/>, both ways.</remarks>
public sealed class ResumableSha256
{
    private const string Tag = "sha256-state-v1";
    private static readonly unsafe delegate* unmanaged<byte*, byte*, nuint, int> s_openSslUpdate = FindOpenSsl();
    private readonly bool _native;
    private readonly uint[] _h = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];
    private readonly byte[] _pending = new byte[64];
    private int _pendingCount;

    /// <summary>A new hash (OpenSSL's block function when it is there).</summary>
    public ResumableSha256()
        : this(native: true)
    {
    }

    /// <summary>A new hash; <paramref name="native"/> false: always the managed compression function (tests).</summary>
    internal ResumableSha256(bool native) => _native = native;

    /// <summary>Whether OpenSSL's block function is used.</summary>
    public unsafe bool Native => _native && s_openSslUpdate != null;

    /// <summary>Bytes appended so far (over every step that carried this state).</summary>
    public long Length { get; private set; }

    /// <summary>Hashes <paramref name="data"/> after everything appended before.</summary>
    public void Append(ReadOnlySpan<byte> data)
    {
        Length += data.Length;
        if (_pendingCount > 0)
        {
            int take = Math.Min(64 - _pendingCount, data.Length);
            data[..take].CopyTo(_pending.AsSpan(_pendingCount));
            _pendingCount += take;
            data = data[take..];
            if (_pendingCount < 64)
            {
                return;
            }
            Blocks(_h, _pending);
            _pendingCount = 0;
        }
        int whole = data.Length & ~63;
        if (whole > 0)
        {
            Blocks(_h, data[..whole]);
        }
        data[whole..].CopyTo(_pending);
        _pendingCount = data.Length - whole;
    }

    /// <summary>Lower-case hex digest of everything appended; the state is left as it was (more may be appended).</summary>
    public string FinishHex()
    {
        Span<byte> tail = stackalloc byte[128];
        tail.Clear();
        _pending.AsSpan(0, _pendingCount).CopyTo(tail);
        tail[_pendingCount] = 0x80;
        int size = _pendingCount + 1 + 8 <= 64 ? 64 : 128;
        BinaryPrimitives.WriteUInt64BigEndian(tail[(size - 8)..], (ulong)Length * 8);
        uint[] h = [.. _h];
        Blocks(h, tail[..size]);
        Span<byte> digest = stackalloc byte[32];
        for (int i = 0; i < 8; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(digest[(i * 4)..], h[i]);
        }
        return Convert.ToHexStringLower(digest);
    }

    /// <summary>The running state as one line: <c>sha256-state-v1 LENGTH H0..H7 PENDING</c> (hex; at most 63 pending bytes).</summary>
    public string Export()
    {
        Span<byte> words = stackalloc byte[32];
        for (int i = 0; i < 8; i++)
        {
            BinaryPrimitives.WriteUInt32BigEndian(words[(i * 4)..], _h[i]);
        }
        return $"{Tag} {Length.ToString(CultureInfo.InvariantCulture)} {Convert.ToHexStringLower(words)} {Convert.ToHexStringLower(_pending.AsSpan(0, _pendingCount))}".TrimEnd();
    }

    /// <summary>Takes up a state written by <see cref="Export"/>.</summary>
    /// <exception cref="CaptureException">the text is not such a state (names what is wrong).</exception>
    public static ResumableSha256 Import(string state) => Import(state, native: true);

    /// <summary>As <see cref="Import(string)"/>; <paramref name="native"/> false: the managed compression function (tests).</summary>
    internal static ResumableSha256 Import(string state, bool native)
    {
        string[] fields = state.Split(' ');
        if (fields.Length is not (3 or 4) || fields[0] != Tag)
        {
            throw new CaptureException($"saved hash state '{Shorten(state)}' is not '{Tag} LENGTH STATE [PENDING]'");
        }
        if (!long.TryParse(fields[1], NumberStyles.None, CultureInfo.InvariantCulture, out long length))
        {
            throw new CaptureException($"saved hash state: length '{Shorten(fields[1])}' is not a number");
        }
        byte[] words;
        byte[] pending;
        try
        {
            words = Convert.FromHexString(fields[2]);
            pending = fields.Length == 4 ? Convert.FromHexString(fields[3]) : [];
        }
        catch (FormatException)
        {
            throw new CaptureException($"saved hash state '{Shorten(state)}' holds something that is not hex");
        }
        if (words.Length != 32 || pending.Length != length % 64)
        {
            throw new CaptureException($"saved hash state: {words.Length} state bytes (32 expected) and {pending.Length} pending bytes ({length % 64} expected for length {length})");
        }
        var hash = new ResumableSha256(native) { Length = length, _pendingCount = pending.Length };
        for (int i = 0; i < 8; i++)
        {
            hash._h[i] = BinaryPrimitives.ReadUInt32BigEndian(words.AsSpan(i * 4));
        }
        pending.CopyTo(hash._pending, 0);
        return hash;
    }

    private static string Shorten(string text) => text.Length <= 80 ? text : text[..80] + "...";

    private static ReadOnlySpan<uint> K =>
    [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ];

    // libcrypto's SHA256_Update (OpenSSL 3 and 1.1 export it), or null.
    private static unsafe delegate* unmanaged<byte*, byte*, nuint, int> FindOpenSsl()
    {
        foreach (string name in new[] { "libcrypto.so.3", "libcrypto.so.1.1" })
        {
            if (NativeLibrary.TryLoad(name, out IntPtr library) && NativeLibrary.TryGetExport(library, "SHA256_Update", out IntPtr update))
            {
                return (delegate* unmanaged<byte*, byte*, nuint, int>)update;
            }
        }
        return null;
    }

    // Whole 64-byte blocks into the state words: through OpenSSL's SHA256_CTX (openssl/sha.h, a public layout: h[8],
    // Nl, Nh, data[64 bytes], num, md_len = 112 bytes) holding our words with nothing pending, so SHA256_Update runs its
    // block function over every block and keeps no byte; or managed.
    private unsafe void Blocks(uint[] state, ReadOnlySpan<byte> blocks)
    {
        if (!Native)
        {
            Compress(state, blocks);
            return;
        }
        const int ContextBytes = 112;
        byte* context = stackalloc byte[ContextBytes];
        new Span<byte>(context, ContextBytes).Clear();
        uint* words = (uint*)context;
        for (int i = 0; i < 8; i++)
        {
            words[i] = state[i];
        }
        words[27] = 32; // md_len
        fixed (byte* data = blocks)
        {
            if (s_openSslUpdate(context, data, (nuint)blocks.Length) != 1 || words[26] != 0)
            {
                throw new InvalidOperationException("OpenSSL's SHA256_Update failed or kept bytes of whole blocks");
            }
        }
        for (int i = 0; i < 8; i++)
        {
            state[i] = words[i];
        }
    }

    // The managed compression function over whole 64-byte blocks.
    private static void Compress(uint[] state, ReadOnlySpan<byte> blocks)
    {
        Span<uint> w = stackalloc uint[64];
        ReadOnlySpan<uint> k = K;
        uint h0 = state[0], h1 = state[1], h2 = state[2], h3 = state[3], h4 = state[4], h5 = state[5], h6 = state[6], h7 = state[7];
        for (int offset = 0; offset < blocks.Length; offset += 64)
        {
            ReadOnlySpan<byte> block = blocks.Slice(offset, 64);
            for (int t = 0; t < 16; t++)
            {
                w[t] = BinaryPrimitives.ReadUInt32BigEndian(block[(t * 4)..]);
            }
            for (int t = 16; t < 64; t++)
            {
                uint x = w[t - 15], y = w[t - 2];
                uint s0 = BitOperations.RotateRight(x, 7) ^ BitOperations.RotateRight(x, 18) ^ (x >> 3);
                uint s1 = BitOperations.RotateRight(y, 17) ^ BitOperations.RotateRight(y, 19) ^ (y >> 10);
                w[t] = w[t - 16] + s0 + w[t - 7] + s1;
            }
            uint a = h0, b = h1, c = h2, d = h3, e = h4, f = h5, g = h6, h = h7;
            for (int t = 0; t < 64; t++)
            {
                uint t1 = h + (BitOperations.RotateRight(e, 6) ^ BitOperations.RotateRight(e, 11) ^ BitOperations.RotateRight(e, 25)) + ((e & f) ^ (~e & g)) + k[t] + w[t];
                uint t2 = (BitOperations.RotateRight(a, 2) ^ BitOperations.RotateRight(a, 13) ^ BitOperations.RotateRight(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
                h = g;
                g = f;
                f = e;
                e = d + t1;
                d = c;
                c = b;
                b = a;
                a = t1 + t2;
            }
            h0 += a;
            h1 += b;
            h2 += c;
            h3 += d;
            h4 += e;
            h5 += f;
            h6 += g;
            h7 += h;
        }
        state[0] = h0;
        state[1] = h1;
        state[2] = h2;
        state[3] = h3;
        state[4] = h4;
        state[5] = h5;
        state[6] = h6;
        state[7] = h7;
    }
}
