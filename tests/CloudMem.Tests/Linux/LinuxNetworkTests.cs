using System.Text.Json;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>Sockets and modules from the image alone, against /proc/net/* and /proc/modules as the guest saw them.</summary>
public sealed class LinuxNetworkTests
{
    public static TheoryData<string, string> Captures() => new()
    {
        { "basic", "memory.raw" },
        { "basic", "memory.kdump-zstd" },
        { "nokaslr-novmci", "memory.elf" },
        { "nokaslr-novmci", "memory.lime" },
        { "pti", "memory.elf" },
    };

    private static (string Address, int Port) Split(string endpoint)
    {
        int colon = endpoint.LastIndexOf(':');
        return (endpoint[..colon].Trim('[', ']'), int.Parse(endpoint[(colon + 1)..], System.Globalization.CultureInfo.InvariantCulture));
    }

    [SkippableTheory]
    [MemberData(nameof(Captures))]
    public void Every_tcp_udp_and_unix_socket_in_truth_is_found_with_its_owner(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        (List<LinuxSocket> sockets, _) = LinuxSockets.List(context);
        using JsonDocument truth = Fixture.Truth(variant);
        int inet = 0;
        foreach (JsonElement expected in truth.RootElement.GetProperty("sockets").EnumerateArray())
        {
            ulong inode = expected.GetProperty("inode").GetUInt64();
            LinuxSocket? found = sockets.FirstOrDefault(s => s.Inode == inode);
            Assert.True(found is not null, $"socket inode {inode} ({expected.GetProperty("local").GetString()}) missing");
            string proto = expected.GetProperty("proto").GetString()!;
            Assert.Equal(proto.StartsWith("tcp", StringComparison.Ordinal) ? "TCP" : "UDP", found!.Protocol);
            Assert.Equal(proto.EndsWith('6') ? "AF_INET6" : "AF_INET", found.Family);
            (string localAddress, int localPort) = Split(expected.GetProperty("local").GetString()!);
            (string remoteAddress, int remotePort) = Split(expected.GetProperty("remote").GetString()!);
            Assert.Equal(localAddress, found.LocalAddress);
            Assert.Equal(localPort, found.LocalPort);
            Assert.Equal(remoteAddress, found.RemoteAddress);
            Assert.Equal(remotePort, found.RemotePort);
            Assert.Equal(expected.GetProperty("state").GetString(), found.State);
            foreach (JsonElement pid in expected.GetProperty("pids").EnumerateArray())
            {
                Assert.Contains(sockets, s => s.Inode == inode && s.Pid == pid.GetInt32());
            }
            inet++;
        }
        Assert.True(inet >= 5);
        foreach (JsonElement expected in truth.RootElement.GetProperty("unix_sockets").EnumerateArray())
        {
            ulong inode = expected.GetProperty("inode").GetUInt64();
            LinuxSocket? found = sockets.FirstOrDefault(s => s.Inode == inode);
            Assert.True(found is not null, $"unix socket {expected.GetProperty("path").GetString()} missing");
            Assert.Equal(expected.GetProperty("path").GetString(), found!.Path);
            Assert.Equal(expected.GetProperty("type").GetString(), found.Type);
            Assert.Equal(expected.GetProperty("state").GetString(), found.State);
            Assert.All(expected.GetProperty("pids").EnumerateArray(), pid => Assert.Contains(sockets, s => s.Inode == inode && s.Pid == pid.GetInt32()));
        }
    }

    [SkippableTheory]
    [MemberData(nameof(Captures))]
    public void Every_module_in_truth_is_listed_with_its_base_and_size(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        LinuxContext context = LinuxContext.Open(memory);
        (List<LinuxModule> modules, List<string> notes) = LinuxSockets.Modules(context);
        Assert.Empty(notes);
        using JsonDocument truth = Fixture.Truth(variant);
        JsonElement expected = truth.RootElement.GetProperty("modules");
        Assert.Equal(expected.GetArrayLength(), modules.Count);
        foreach (JsonElement m in expected.EnumerateArray())
        {
            LinuxModule? found = modules.FirstOrDefault(x => x.Name == m.GetProperty("name").GetString());
            Assert.NotNull(found);
            Assert.Equal(Convert.ToUInt64(m.GetProperty("base").GetString(), 16), found!.Base);
            Assert.Equal(m.GetProperty("size").GetUInt64(), found.Size);
        }
    }
}
