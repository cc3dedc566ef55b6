using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text.Json;
using CloudMem.Engine.Convert;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Support;

/// <summary>
/// A real fixture capture as a VMware memory snapshot: the .vmem is a copy of .fixtures/VARIANT/memory.raw (whole, or
/// its first <c>sliceBytes</c>), the .vmsn is what our own converter writes for it. Made once per process per size.
/// </summary>
public static class VSphereSeeds
{
    private static readonly Dictionary<string, (string Vmsn, string Vmem)> s_made = [];

    /// <summary>Paths of seed.vmsn and seed.vmem for <paramref name="variant"/>/memory.raw (skips without the fixture).</summary>
    public static (string Vmsn, string Vmem) Get(string variant = "basic", long sliceBytes = 0)
    {
        string raw = Fixture.Require("memory.raw", variant);
        string key = $"{variant}-{sliceBytes}";
        lock (s_made)
        {
            if (s_made.TryGetValue(key, out (string, string) made))
            {
                return made;
            }
            string directory = Path.Combine(Path.GetTempPath(), $"cloudmem-vsphere-seed-{Environment.ProcessId}-{key}");
            if (Directory.Exists(directory))
            {
                Directory.Delete(directory, recursive: true);
            }
            Directory.CreateDirectory(directory);
            string source = raw;
            if (sliceBytes > 0)
            {
                source = Path.Combine(directory, "slice.raw");
                using var input = File.OpenRead(raw);
                using var output = File.Create(source);
                CopyBytes(input, output, sliceBytes);
            }
            Directory.CreateDirectory(Path.Combine(directory, "out"));
            string vmsn = Path.Combine(directory, "out", "seed.vmsn");
            using (RunMappedMemory memory = CaptureOpener.Open(source))
            {
                CaptureConverter.Convert(source, memory, "vmsn", vmsn);
            }
            made = (vmsn, Path.Combine(directory, "out", "seed.vmem"));
            s_made[key] = made;
            return made;
        }
    }

    /// <summary>SHA-256 (lower-case hex) of a file.</summary>
    public static string Sha256(string path)
    {
        using var file = File.OpenRead(path);
        return Convert.ToHexStringLower(SHA256.HashData(file));
    }

    private static void CopyBytes(Stream input, Stream output, long count)
    {
        byte[] buffer = new byte[1 << 20];
        while (count > 0)
        {
            int read = input.Read(buffer, 0, (int)Math.Min(buffer.Length, count));
            if (read == 0)
            {
                break;
            }
            output.Write(buffer, 0, read);
            count -= read;
        }
    }
}

/// <summary>
/// cloudmem-vcsim (tests/emulators/vcsim, built by setup.sh) as a child process: started with seed files, described
/// by its JSON line, stopped (datastores removed) on dispose by closing its standard input.
/// </summary>
public sealed class VcsimProcess : IDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _stderr = new();

    /// <summary>Starts the simulator; <paramref name="memoryKey"/>: list the .vmem in layoutEx as ESXi does.</summary>
    public VcsimProcess(string vmsn, string vmem, bool memoryKey = true, bool tls = false)
    {
        string binary = Emulators.Require(Path.Combine("vcsim", "cloudmem-vcsim"));
        var start = new ProcessStartInfo(binary)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (string argument in new[] { "-seed-vmsn", vmsn, "-seed-vmem", vmem, $"-memory-key={(memoryKey ? "true" : "false")}" })
        {
            start.ArgumentList.Add(argument);
        }
        if (tls)
        {
            start.ArgumentList.Add("-tls");
        }
        _process = Process.Start(start) ?? throw new InvalidOperationException("cloudmem-vcsim did not start");
        _process.ErrorDataReceived += (_, e) =>
        {
            lock (_stderr)
            {
                _stderr.AppendLine(e.Data);
            }
        };
        _process.BeginErrorReadLine();
        string? line = _process.StandardOutput.ReadLine();
        if (line is null)
        {
            throw new InvalidOperationException($"cloudmem-vcsim exited: {Stderr}");
        }
        using JsonDocument description = JsonDocument.Parse(line);
        Url = new Uri(description.RootElement.GetProperty("url").GetString()!);
        Thumbprint = description.RootElement.TryGetProperty("thumbprint", out JsonElement thumbprint) ? thumbprint.GetString() : null;
        Datastores = description.RootElement.GetProperty("datastores").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetString()!);
    }

    /// <summary>The SDK URL (http(s)://127.0.0.1:port/sdk).</summary>
    public Uri Url { get; }

    /// <summary>SHA-256 of the TLS certificate (with -tls).</summary>
    public string? Thumbprint { get; }

    /// <summary>Datastore name to local directory.</summary>
    public IReadOnlyDictionary<string, string> Datastores { get; }

    /// <summary>What it wrote on stderr.</summary>
    public string Stderr
    {
        get
        {
            lock (_stderr)
            {
                return _stderr.ToString();
            }
        }
    }

    /// <summary>Snapshot files (NAME-SnapshotN.vmsn/.vmem) present on any datastore.</summary>
    public IReadOnlyList<string> SnapshotFiles() => [.. Datastores.Values
        .SelectMany(d => Directory.EnumerateFiles(d, "*-Snapshot*", SearchOption.AllDirectories))];

    /// <inheritdoc />
    public void Dispose()
    {
        try
        {
            _process.StandardInput.Close();
            if (!_process.WaitForExit(5000))
            {
                _process.Kill(entireProcessTree: true);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
    }
}

/// <summary>What a <see cref="FaultProxy"/> does to the server-to-client bytes.</summary>
public enum ProxyFault
{
    /// <summary>Nothing.</summary>
    None,
    /// <summary>Cuts the connection once when it has carried <c>at</c> bytes.</summary>
    CutOnce,
    /// <summary>Cuts every connection that reaches <c>at</c> bytes.</summary>
    CutAlways,
    /// <summary>Flips one byte at offset <c>at</c> of the first connection that gets that far.</summary>
    CorruptOnce,
}

/// <summary>A TCP proxy on 127.0.0.1 in front of a server, injecting one <see cref="ProxyFault"/>.</summary>
public sealed class FaultProxy : IDisposable
{
    private readonly TcpListener _listener;
    private readonly IPEndPoint _target;
    private readonly ProxyFault _fault;
    private readonly long _at;
    private readonly CancellationTokenSource _stop = new();
    private int _fired;

    /// <summary>Starts forwarding to <paramref name="target"/>.</summary>
    public FaultProxy(Uri target, ProxyFault fault, long at)
    {
        _target = new IPEndPoint(IPAddress.Parse(target.Host), target.Port);
        _fault = fault;
        _at = at;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Url = new UriBuilder(target) { Port = ((IPEndPoint)_listener.LocalEndpoint).Port }.Uri;
        _ = TcpAcceptLoop.RunAsync(_listener, _stop.Token, HandleAsync);
    }

    /// <summary>The proxy's URL (same path as the target's).</summary>
    public Uri Url { get; }

    /// <summary>How many times the fault was injected.</summary>
    public int Fired => Volatile.Read(ref _fired);

    private async Task HandleAsync(TcpClient client)
    {
        using (client)
        using (var server = new TcpClient())
        {
            try
            {
                await server.ConnectAsync(_target, _stop.Token);
                NetworkStream clientStream = client.GetStream();
                NetworkStream serverStream = server.GetStream();
                Task up = clientStream.CopyToAsync(serverStream, _stop.Token);
                Task down = DownAsync(serverStream, clientStream);
                await Task.WhenAny(up, down);
            }
            catch (Exception)
            {
            }
        }
    }

    private async Task DownAsync(NetworkStream from, NetworkStream to)
    {
        byte[] buffer = new byte[64 * 1024];
        long carried = 0;
        while (true)
        {
            int read = await from.ReadAsync(buffer, _stop.Token);
            if (read == 0)
            {
                return;
            }
            if (carried + read > _at)
            {
                int offset = (int)(_at - carried);
                switch (_fault)
                {
                    case ProxyFault.CutOnce when Interlocked.CompareExchange(ref _fired, 1, 0) == 0:
                    case ProxyFault.CutAlways when Interlocked.Increment(ref _fired) > 0:
                        await to.WriteAsync(buffer.AsMemory(0, offset), _stop.Token);
                        return; // both sockets close: the client sees the body end early
                    case ProxyFault.CorruptOnce when offset >= 0 && Interlocked.CompareExchange(ref _fired, 1, 0) == 0:
                        buffer[offset] ^= 0x5A;
                        break;
                }
            }
            await to.WriteAsync(buffer.AsMemory(0, read), _stop.Token);
            carried += read;
        }
    }

    /// <inheritdoc />
    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _stop.Dispose();
    }
}
