using System.Text;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Capture;

/// <summary>A kernel version banner found in physical memory.</summary>
/// <param name="Text">The banner line, e.g. "Linux version 6.1.0-56-amd64 (...) #1 SMP ...".</param>
/// <param name="PhysicalAddress">Where it starts.</param>
public sealed record KernelBanner(string Text, ulong PhysicalAddress);

/// <summary>
/// Finds the Linux kernel's version banner (<c>linux_banner</c>: "Linux version R (builder) (compiler) #N ...\n")
/// by scanning physical memory. Copies in log buffers and page cache look the same, so the first well-formed
/// one in address order is returned, which is the kernel image's own for every kernel we have seen
/// (checked against the linux_banner symbol of Debian 6.1.0-56-amd64).
/// </summary>
public static class BannerScanner
{
    private static readonly byte[] s_prefix = "Linux version "u8.ToArray();
    private const int MaxBanner = 512;

    /// <summary>Scans <paramref name="memory"/>; null when no banner is found.</summary>
    public static KernelBanner? FindLinuxBanner(IPhysicalMemory memory, CancellationToken cancellationToken = default)
    {
        KernelBanner? found = null;
        ulong previousEnd = ulong.MaxValue;
        SequentialReader.ForEachBlock(memory, (pa, data) =>
        {
            // A banner whose prefix straddles the edge with the previous block.
            if (pa == previousEnd && pa >= (ulong)s_prefix.Length)
            {
                Span<byte> edge = stackalloc byte[2 * s_prefix.Length - 2];
                ulong edgeStart = pa - (ulong)s_prefix.Length + 1;
                int hitEdge = edge[..memory.Read(edgeStart, edge)].IndexOf(s_prefix);
                if (hitEdge >= 0 && TryAt(memory, edgeStart + (ulong)hitEdge, out found))
                {
                    return false;
                }
            }
            previousEnd = pa + (ulong)data.Length;
            int from = 0;
            while (true)
            {
                int hit = data[from..].IndexOf(s_prefix);
                if (hit < 0)
                {
                    return true;
                }
                if (TryAt(memory, pa + (ulong)(from + hit), out found))
                {
                    return false;
                }
                from += hit + 1;
            }
        }, cancellationToken: cancellationToken);
        return found;
    }

    private static bool TryAt(IPhysicalMemory memory, ulong at, out KernelBanner? banner)
    {
        Span<byte> text = stackalloc byte[MaxBanner];
        string? line = Validate(text[..memory.Read(at, text)]);
        banner = line is null ? null : new KernelBanner(line, at);
        return banner is not null;
    }

    /// <summary>Accepts "Linux version X (…) … #N …" of printable ASCII ending in a newline.</summary>
    internal static string? Validate(ReadOnlySpan<byte> text)
    {
        int end = text.IndexOf((byte)'\n');
        if (end < 40)
        {
            return null;
        }
        ReadOnlySpan<byte> line = text[..end];
        foreach (byte b in line)
        {
            if (b < 0x20 || b > 0x7E)
            {
                return null;
            }
        }
        string s = Encoding.ASCII.GetString(line);
        int release = s.IndexOf(' ', s_prefix.Length);
        int build = s.IndexOf(" #", StringComparison.Ordinal);
        // UTS_VERSION always starts with "#<build number>"; a "# SMP" copy without it is a link-time placeholder
        // that some kernels keep in .rodata next to the real linux_banner.
        if (release <= s_prefix.Length || s.IndexOf(" (", StringComparison.Ordinal) < 0 || build < 0 || build + 2 >= s.Length || !char.IsAsciiDigit(s[build + 2]))
        {
            return null;
        }
        // Format strings ("Linux version %s") and log prefixes are not banners.
        return s.Contains('%') ? null : s;
    }
}
