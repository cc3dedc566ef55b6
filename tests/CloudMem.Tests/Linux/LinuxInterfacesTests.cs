using System.Text.Json;
using System.Text.RegularExpressions;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.ip.link and linux.ip.addr from the image alone, against the guest's own <c>ip addr</c> output (truth.json ip_addr).</summary>
public sealed partial class LinuxInterfacesTests
{
    public static TheoryData<string, string> Captures() => new()
    {
        { "basic", "memory.raw" },
        { "nokaslr-novmci", "memory.lime" },
        { "pti", "memory.elf" },
        { "rootkit", "memory.raw" },
    };

    [GeneratedRegex(@"^(\d+): ([^:@]+)(?:@\S+)?: <([^>]*)> mtu (\d+) qdisc (\S+)(?:.* qlen (\d+))?")]
    private static partial Regex LinkLine();

    [GeneratedRegex(@"^\s+link/(\S+) ([0-9a-f:]+)")]
    private static partial Regex MacLine();

    [GeneratedRegex(@"^\s+(inet6?) ([0-9a-f.:]+)/(\d+) (?:brd \S+ )?scope (\S+)(?: (\S+))?")]
    private static partial Regex AddressLine();

    [SkippableTheory]
    [MemberData(nameof(Captures))]
    public void Every_interface_and_address_of_ip_addr_is_found_with_the_same_attributes(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        using JsonDocument truth = Fixture.Truth(variant);
        LinuxContext context = LinuxContext.Open(memory);
        var links = LinuxInterfaces.Links(context);
        var addresses = LinuxInterfaces.Addresses(context);
        Assert.Empty(links.Notes);
        Assert.Empty(addresses.Notes);

        var wantLinks = new List<(int Index, string Name, string Flags, uint Mtu, string Qdisc, uint? Qlen, string? Mac, string LinkType)>();
        var wantAddresses = new List<(int Index, string Family, string Address, int Prefix, string Scope, string? Label)>();
        foreach (string line in truth.RootElement.GetProperty("ip_addr").EnumerateArray().Select(e => e.GetString()!))
        {
            if (LinkLine().Match(line) is { Success: true } m)
            {
                wantLinks.Add((int.Parse(m.Groups[1].Value), m.Groups[2].Value, m.Groups[3].Value, uint.Parse(m.Groups[4].Value), m.Groups[5].Value,
                    m.Groups[6].Success ? uint.Parse(m.Groups[6].Value) : null, null, ""));
            }
            else if (MacLine().Match(line) is { Success: true } mac)
            {
                wantLinks[^1] = wantLinks[^1] with { Mac = mac.Groups[2].Value, LinkType = mac.Groups[1].Value };
            }
            else if (AddressLine().Match(line) is { Success: true } a)
            {
                wantAddresses.Add((wantLinks[^1].Index, a.Groups[1].Value, a.Groups[2].Value, int.Parse(a.Groups[3].Value), a.Groups[4].Value,
                    a.Groups[1].Value == "inet" && a.Groups[5].Success ? a.Groups[5].Value : null));
            }
        }
        Assert.True(wantLinks.Count >= 2, "ip_addr in truth has fewer than two interfaces");
        Assert.True(wantAddresses.Count >= 4, "ip_addr in truth has fewer than four addresses");

        Assert.Single(links.Rows.Select(l => l.NetNs).Distinct());
        Assert.Equal(wantLinks.Count, links.Rows.Count);
        foreach (var want in wantLinks)
        {
            LinuxInterface got = Assert.Single(links.Rows, l => l.Index == want.Index);
            Assert.Equal(want.Name, got.Name);
            Assert.Equal(want.Flags, got.Flags);
            Assert.Equal(want.Mtu, got.Mtu);
            Assert.Equal(want.Qdisc, got.Qdisc);
            Assert.Equal(want.Qlen, got.TxQueueLength);
            Assert.Equal(want.Mac, got.Mac);
            Assert.Equal(want.LinkType, got.LinkType);
            Assert.False(got.Promiscuous);
            Assert.Null(got.Doubt);
        }
        Assert.Equal(wantAddresses.Count, addresses.Rows.Count);
        foreach (var want in wantAddresses)
        {
            LinuxInterfaceAddress got = Assert.Single(addresses.Rows, a => a.Index == want.Index && a.Address == want.Address);
            Assert.Equal(want.Family, got.Family);
            Assert.Equal(want.Prefix, got.PrefixLength);
            Assert.Equal(want.Scope, got.Scope);
            Assert.Equal(want.Label, got.Label);
            Assert.Equal(wantLinks.Single(l => l.Index == want.Index).Mac, got.Mac);
        }
    }
}
