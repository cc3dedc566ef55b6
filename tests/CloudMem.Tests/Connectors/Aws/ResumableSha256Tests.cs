using System.Security.Cryptography;
using CloudMem.Connectors.Core;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>The AWS workflow's read-back hash: SHA-256 whose state is saved between finalize steps.</summary>
public sealed class ResumableSha256Tests
{
    [Fact]
    public void Whole_blocks_go_through_openssl_on_linux()
    {
        Assert.Equal(OperatingSystem.IsLinux(), new ResumableSha256().Native);
        Assert.False(new ResumableSha256(native: false).Native);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(55)]
    [InlineData(56)]
    [InlineData(63)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(119)]
    [InlineData(128)]
    [InlineData(1_000_003)]
    public void Digest_equals_the_platform_sha256_whatever_the_split_and_the_saves(int length)
    {
        foreach (bool native in new[] { true, false })
        {
            Check(length, native);
        }
    }

    private static void Check(int length, bool native)
    {
        byte[] data = new byte[length];
        new Random(length).NextBytes(data);
        string expected = Convert.ToHexStringLower(SHA256.HashData(data));

        var whole = new ResumableSha256(native);
        whole.Append(data);
        Assert.Equal(expected, whole.FinishHex());

        // Odd pieces, the state exported and imported (a new step) after each one.
        var random = new Random(7);
        string state = new ResumableSha256(native).Export();
        int at = 0;
        while (at < length)
        {
            int piece = Math.Min(length - at, random.Next(1, 300_000));
            // Each step may run on the other implementation: the state is the same words.
            ResumableSha256 step = ResumableSha256.Import(state, native = !native);
            step.Append(data.AsSpan(at, piece));
            at += piece;
            state = step.Export();
        }
        ResumableSha256 last = ResumableSha256.Import(state, native);
        Assert.Equal(length, last.Length);
        Assert.Equal(expected, last.FinishHex());
        // Finishing leaves the state alone.
        Assert.Equal(expected, last.FinishHex());
    }

    [Theory]
    [InlineData("", "is not 'sha256-state-v1")]
    [InlineData("sha256-state-v1 x 00", "length 'x' is not a number")]
    [InlineData("sha256-state-v1 3 6a09e667bb67ae853c6ef372a54ff53a510e527f9b05688c1f83d9ab5be0cd19 00", "1 pending bytes (3 expected for length 3)")]
    [InlineData("sha256-state-v1 0 zz", "not hex")]
    public void A_damaged_state_is_refused_with_what_is_wrong(string state, string message)
    {
        CaptureException e = Assert.Throws<CaptureException>(() => ResumableSha256.Import(state));
        Assert.Contains(message, e.Message, StringComparison.Ordinal);
    }
}
