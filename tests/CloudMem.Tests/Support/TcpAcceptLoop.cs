using System.Net.Sockets;

namespace CloudMem.Tests.Support;

/// <summary>The accept loop of the tests' loopback TCP servers and proxies: each client is handed to
/// <paramref name="serve"/> on its own task until the listener stops or the token is cancelled.</summary>
public static class TcpAcceptLoop
{
    /// <summary>Accepts clients until <paramref name="stop"/> is cancelled or the listener is closed.</summary>
    public static async Task RunAsync(TcpListener listener, CancellationToken stop, Func<TcpClient, Task> serve)
    {
        while (!stop.IsCancellationRequested)
        {
            TcpClient client;
            try
            {
                client = await listener.AcceptTcpClientAsync(stop);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException or InvalidOperationException)
            {
                return;
            }
            _ = Task.Run(() => serve(client));
        }
    }
}
