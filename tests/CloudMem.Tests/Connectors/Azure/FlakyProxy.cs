using CloudMem.Tests.Support;
using System.Net;
using System.Net.Sockets;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// A TCP proxy on 127.0.0.1 in front of another local port that drops a connection once after it has forwarded
/// <see cref="CutAfterBytes"/> bytes client-to-server (an upload) or server-to-client (a download), then forwards
/// faithfully. Bounded: it only ever connects to the one loopback target.
/// </summary>
public sealed class FlakyProxy : IDisposable
{
    private readonly TcpListener _listener;
    private readonly int _target;
    private readonly CancellationTokenSource _stop = new();
    private int _cuts;

    public FlakyProxy(int targetPort, long cutAfterBytes, bool cutUpload)
    {
        _target = targetPort;
        CutAfterBytes = cutAfterBytes;
        CutUpload = cutUpload;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        _ = TcpAcceptLoop.RunAsync(_listener, _stop.Token, HandleAsync);
    }

    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    public long CutAfterBytes { get; }

    public bool CutUpload { get; }

    /// <summary>How many connections were cut (at most one).</summary>
    public int Cuts => Volatile.Read(ref _cuts);

    private async Task HandleAsync(TcpClient client)
    {
        using (client)
        using (var server = new TcpClient())
        {
            try
            {
                await server.ConnectAsync(IPAddress.Loopback, _target, _stop.Token);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
                Task up = PumpAsync(client.GetStream(), server.GetStream(), CutUpload, linked);
                Task down = PumpAsync(server.GetStream(), client.GetStream(), !CutUpload, linked);
                await Task.WhenAny(up, down);
                linked.Cancel();
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
            }
            client.Client.LingerState = new LingerOption(true, 0);
        }
    }

    private async Task PumpAsync(NetworkStream from, NetworkStream to, bool mayCut, CancellationTokenSource linked)
    {
        byte[] buffer = new byte[64 * 1024];
        long forwarded = 0;
        try
        {
            while (true)
            {
                int read = await from.ReadAsync(buffer, linked.Token);
                if (read == 0)
                {
                    return;
                }
                if (mayCut && Volatile.Read(ref _cuts) == 0 && forwarded + read > CutAfterBytes
                    && Interlocked.CompareExchange(ref _cuts, 1, 0) == 0)
                {
                    int part = (int)Math.Max(0, CutAfterBytes - forwarded);
                    await to.WriteAsync(buffer.AsMemory(0, part), linked.Token);
                    linked.Cancel();
                    return;
                }
                await to.WriteAsync(buffer.AsMemory(0, read), linked.Token);
                forwarded += read;
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
        {
        }
    }

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
        _listener.Dispose();
    }
}
