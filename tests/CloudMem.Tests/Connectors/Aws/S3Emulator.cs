using System.Net;
using System.Net.Sockets;
using System.Text;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>
/// s3rver 3.7.1 (installed by tests/emulators/setup.sh) on a free 127.0.0.1 port, with a bucket and the test's fake
/// key pair registered (s3rver knows only its own S3RVER key otherwise). Its data directory is removed on dispose.
/// </summary>
public sealed class S3Emulator : IDisposable
{
    private const string Launcher = """
        const S3rver = require('s3rver');
        const AWSAccount = require('s3rver/lib/models/account');
        AWSAccount.DUMMY_ACCOUNT.createKeyPair(process.env.FAKE_ACCESS_KEY, process.env.FAKE_SECRET_KEY);
        new S3rver({ port: Number(process.env.PORT), address: '127.0.0.1', silent: true,
                     directory: process.env.DATA_DIR, configureBuckets: [{ name: process.env.BUCKET }] })
          .run().then(() => console.log('s3rver ready'), e => { console.error(e); process.exit(1); });
        """;

    private readonly EmulatorProcess _process;

    public S3Emulator(string bucket, string accessKey, string secretKey)
    {
        string module = Emulators.Require(Path.Combine("s3rver", "node_modules", "s3rver", "package.json"));
        string modules = Path.GetDirectoryName(Path.GetDirectoryName(module))!;
        DataDirectory = Directory.CreateTempSubdirectory("cloudmem-s3rver-").FullName;
        Port = Emulators.FreePort();
        Bucket = bucket;
        string script = Path.Combine(DataDirectory, "..", $"cloudmem-s3rver-launch-{Port}.js");
        File.WriteAllText(script, Launcher);
        var env = new Dictionary<string, string>
        {
            ["NODE_PATH"] = modules,
            ["FAKE_ACCESS_KEY"] = accessKey,
            ["FAKE_SECRET_KEY"] = secretKey,
            ["PORT"] = Port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["DATA_DIR"] = DataDirectory,
            ["BUCKET"] = bucket,
        };
        _process = new EmulatorProcess("node", [script], Port, environment: env);
        File.Delete(script);
    }

    public int Port { get; }

    public string Bucket { get; }

    public string DataDirectory { get; }

    public string Url => $"http://127.0.0.1:{Port}";

    public string Output => _process.Output;

    public void Dispose()
    {
        _process.Dispose();
        try
        {
            Directory.Delete(DataDirectory, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>
/// A TCP proxy in front of s3rver that cuts, once, the upload of one part: it forwards the request headers and half
/// the body of the first <c>PUT ...partNumber=N</c> it sees, then drops both connections (a network failure mid-part).
/// Everything else is passed through untouched.
/// </summary>
public sealed class CuttingProxy : IDisposable
{
    private readonly TcpListener _listener;
    private readonly int _upstreamPort;
    private readonly int _cutPart;
    private readonly CancellationTokenSource _stop = new();
    private int _cuts;

    public CuttingProxy(int upstreamPort, int cutPart)
    {
        _upstreamPort = upstreamPort;
        _cutPart = cutPart;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
        _ = TcpAcceptLoop.RunAsync(_listener, _stop.Token, ServeAsync);
    }

    public int Port { get; }

    public string Url => $"http://127.0.0.1:{Port}";

    /// <summary>Parts cut so far.</summary>
    public int Cuts => Volatile.Read(ref _cuts);

    private async Task ServeAsync(TcpClient client)
    {
        using (client)
        using (var upstream = new TcpClient())
        {
            try
            {
                await upstream.ConnectAsync(IPAddress.Loopback, _upstreamPort);
                NetworkStream down = client.GetStream();
                NetworkStream up = upstream.GetStream();
                // Read the request head to decide whether this is the part to cut.
                byte[] buffer = new byte[64 * 1024];
                var head = new MemoryStream();
                int headEnd = -1;
                while (headEnd < 0)
                {
                    int read = await down.ReadAsync(buffer);
                    if (read == 0)
                    {
                        return;
                    }
                    head.Write(buffer, 0, read);
                    headEnd = IndexOf(head.GetBuffer().AsSpan(0, (int)head.Length), "\r\n\r\n"u8);
                }
                string requestLine = Encoding.ASCII.GetString(head.GetBuffer(), 0, Math.Min((int)head.Length, 4096)).Split("\r\n")[0];
                bool isPart = requestLine.StartsWith("PUT ", StringComparison.Ordinal)
                    && System.Text.RegularExpressions.Regex.IsMatch(requestLine, $@"[?&]partNumber={_cutPart}[& ]");
                bool cut = isPart && Interlocked.CompareExchange(ref _cuts, 1, 0) == 0;
                if (cut)
                {
                    string headers = Encoding.ASCII.GetString(head.GetBuffer(), 0, headEnd);
                    long length = long.Parse(headers.Split("\r\n").First(h => h.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))[15..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
                    long limit = headEnd + 4 + length / 2;
                    long sent = Math.Min(head.Length, limit);
                    await up.WriteAsync(head.GetBuffer().AsMemory(0, (int)sent));
                    while (sent < limit)
                    {
                        int read = await down.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, limit - sent)));
                        if (read == 0)
                        {
                            break;
                        }
                        await up.WriteAsync(buffer.AsMemory(0, read));
                        sent += read;
                    }
                    client.Client.LingerState = new LingerOption(true, 0); // RST: the client sees a dropped connection
                    upstream.Client.LingerState = new LingerOption(true, 0);
                    return;
                }
                await up.WriteAsync(head.GetBuffer().AsMemory(0, (int)head.Length));
                Task a = down.CopyToAsync(up, _stop.Token).ContinueWith(_ => upstream.Client.Shutdown(SocketShutdown.Send), TaskScheduler.Default);
                Task b = up.CopyToAsync(down, _stop.Token).ContinueWith(_ => client.Client.Shutdown(SocketShutdown.Send), TaskScheduler.Default);
                await Task.WhenAll(a, b);
            }
            catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or ObjectDisposedException)
            {
            }
        }
    }

    private static int IndexOf(ReadOnlySpan<byte> data, ReadOnlySpan<byte> pattern) => data.IndexOf(pattern);

    public void Dispose()
    {
        _stop.Cancel();
        _listener.Stop();
    }
}
