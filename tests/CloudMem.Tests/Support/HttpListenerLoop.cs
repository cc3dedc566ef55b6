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
}
