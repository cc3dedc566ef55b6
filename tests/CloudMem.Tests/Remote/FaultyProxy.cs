using CloudMem.Tests.Support;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace CloudMem.Tests.Remote;

/// <summary>
/// A TCP proxy in front of an HTTP store that misbehaves on a fixed rotation of connections: it answers some requests
/// itself with 503 Slow Down, cuts others off (RST) part-way through the response, delays others, and passes the rest.
/// Every request is forced onto its own connection (the proxy rewrites "Connection: close" into the request head), so
/// the rotation applies per request.
/// </summary>
public sealed class FaultyProxy : IDisposable
{
    private const string SlowDown = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>";

    private readonly TcpListener _listener;
    private readonly int _upstreamPort;
    private readonly CancellationTokenSource _stop = new();
    private int _connections;
    private int _unavailable;
    private int _dropped;
    private int _delayed;

    public FaultyProxy(int upstreamPort)
    {
        _upstreamPort = upstreamPort;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _ = TcpAcceptLoop.RunAsync(_listener, _stop.Token, client => ServeAsync(client, Interlocked.Increment(ref _connections)));
    }

    public int Port { get; }

    public string Url => $"http://127.0.0.1:{Port}";

    /// <summary>The response delay of a slow connection.</summary>
    public TimeSpan Delay { get; init; } = TimeSpan.FromMilliseconds(300);

    public int Unavailable => Volatile.Read(ref _unavailable);

    public int Dropped => Volatile.Read(ref _dropped);

    public int Delayed => Volatile.Read(ref _delayed);

    private async Task ServeAsync(TcpClient client, int n)
    {
        using (client)
        using (var upstream = new TcpClient())
        {
            try
            {
                NetworkStream down = client.GetStream();
                byte[]? head = await ReadHeadAsync(down);
                if (head is null)
                {
                    return;
                }
                switch (n % 5)
                {
                    case 1:
                        Interlocked.Increment(ref _unavailable);
                        byte[] body = Encoding.UTF8.GetBytes(SlowDown);
                        await down.WriteAsync(Encoding.ASCII.GetBytes($"HTTP/1.1 503 Slow Down\r\nContent-Type: application/xml\r\nContent-Length: {body.Length}\r\nConnection: close\r\n\r\n"));
                        await down.WriteAsync(body);
                        return;
                    case 4:
                        Interlocked.Increment(ref _delayed);
                        await Task.Delay(Delay, _stop.Token);
                        break;
                }
                await upstream.ConnectAsync(IPAddress.Loopback, _upstreamPort);
                NetworkStream up = upstream.GetStream();
                await up.WriteAsync(head);
                if (n % 5 == 3)
                {
                    // Relay the status line, headers and a little of the body, then reset the connection.
                    byte[] buffer = new byte[700];
                    int relayed = 0;
                    while (relayed < buffer.Length)
                    {
                        int read = await up.ReadAsync(buffer.AsMemory(relayed));
                        if (read == 0)
                        {
                            break;
                        }
                        relayed += read;
                    }
                    if (relayed == buffer.Length)
                    {
                        Interlocked.Increment(ref _dropped);
                        await down.WriteAsync(buffer);
                        client.Client.LingerState = new LingerOption(true, 0);
                        return;
                    }
                    await down.WriteAsync(buffer.AsMemory(0, relayed)); // the whole response was shorter than the cut
                    return;
                }
                await up.CopyToAsync(down, _stop.Token);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
            }
        }
    }

    /// <summary>Reads a request head (requests to an object store here have no body) and rewrites it to close the connection.</summary>
    private static async Task<byte[]?> ReadHeadAsync(NetworkStream down)
    {
        var head = new MemoryStream();
        byte[] buffer = new byte[16 * 1024];
        while (head.GetBuffer().AsSpan(0, (int)head.Length).IndexOf("\r\n\r\n"u8) < 0)
        {
            int read = await down.ReadAsync(buffer);
            if (read == 0)
            {
                return null;
            }
            head.Write(buffer, 0, read);
        }
        string text = Encoding.ASCII.GetString(head.ToArray());
        int end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        IEnumerable<string> lines = text[..end].Split("\r\n").Where(l => !l.StartsWith("Connection:", StringComparison.OrdinalIgnoreCase));
        return Encoding.ASCII.GetBytes(string.Join("\r\n", lines) + "\r\nConnection: close\r\n\r\n" + text[(end + 4)..]);
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
    }
}
