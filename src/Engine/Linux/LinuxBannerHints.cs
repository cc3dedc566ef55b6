using CloudMem.Engine.Capture;
using CloudMem.Engine.Symbols;

namespace CloudMem.Engine.Linux;

/// <summary>
/// Where earlier commands found a kernel banner that then passed every check (kallsyms from the profile cache, the
/// page tables mapping linux_banner to it): a short list in the profile cache, tried before the banner scan of
/// physical memory. A hint is only a place to look: the banner there must read as a banner, the profile-cache entry
/// for its text must match the capture, and the kernel page tables must map linux_banner to that very address; any
/// failure falls back to the scan, so a hint can save time but never change an answer.
/// </summary>
internal sealed class LinuxBannerHints(ProfileCache cache)
{
    private const string Kind = "hints";
    private const string Key = "linux-banner-hints";
    private const int MaxHints = 32;

    /// <summary>The recorded places, most recent first: physical address and the banner text seen there.</summary>
    public IReadOnlyList<(ulong Address, string Text)> Read()
    {
        var hints = new List<(ulong, string)>();
        if (!cache.TryRead(Kind, Key, out CacheReader reader))
        {
            return hints;
        }
        try
        {
            int count = Math.Min(reader.Int32(), MaxHints);
            for (int i = 0; i < count; i++)
            {
                ulong address = (ulong)reader.Int64();
                if (!reader.TryString(out string? text) || text is null)
                {
                    break;
                }
                hints.Add((address, text));
            }
        }
        catch (InvalidDataException)
        {
            // a damaged list is an empty one; the next success rewrites it
        }
        return hints;
    }

    /// <summary>Puts <paramref name="banner"/> first in the list (dropping the oldest beyond the limit);
    /// <paramref name="known"/> is the list as <see cref="Read"/> gave it to this command.</summary>
    public void Remember(KernelBanner banner, IReadOnlyList<(ulong Address, string Text)> known)
    {
        if (known.Count > 0 && known[0].Address == banner.PhysicalAddress && known[0].Text == banner.Text)
        {
            return;
        }
        var list = new List<(ulong Address, string Text)> { (banner.PhysicalAddress, banner.Text) };
        list.AddRange(known.Where(h => h.Address != banner.PhysicalAddress || h.Text != banner.Text).Take(MaxHints - 1));
        var writer = new CacheWriter();
        writer.Int32(list.Count);
        foreach ((ulong address, string text) in list)
        {
            writer.Int64((long)address);
            writer.String(text);
        }
        cache.Write(Kind, Key, $"places Linux kernel banners were found: {list.Count}", writer.ToArray());
    }
}
