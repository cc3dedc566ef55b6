using System.Net;

namespace CloudMem.Tests.Support;

/// <summary>The request loop of the tests' HttpListener servers: each request is handed to <paramref name="serve"/> in turn until the listener stops.</summary>
public static class HttpListenerLoop
{
    /// <summary>Serves requests until the listener is stopped or closed.</summary>
    public static Task RunAsync(HttpListener listener, Func<HttpListenerContext, Task> serve) => Task.Run(async () =>
    {
        while (listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            await serve(context);
        }
    });

    /// <summary>
    /// Stops and closes <paramref name="listener"/>. The managed HttpListener removes its port binding on Stop and tries
    /// again on Close, and that second attempt binds the port anew: when another test has taken the freed port meanwhile
    /// it throws "Address already in use" from Dispose. One Close, with that error ignored, frees everything.
    /// </summary>
    public static void Shut(HttpListener listener)
    {
        ArgumentNullException.ThrowIfNull(listener);
        try
        {
            listener.Close();
        }
        catch (HttpListenerException)
        {
            // the port was already released; nothing is left to free
        }
    }
}
