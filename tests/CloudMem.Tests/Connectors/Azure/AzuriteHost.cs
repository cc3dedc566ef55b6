using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Azure.Storage;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// azurite's Blob service started for one test class on a free loopback port, in memory (--inMemoryPersistence,
/// --skipApiVersionCheck, --loose). Installed by tests/emulators/setup.sh under ~/.cache/cloudmem/emulators (or
/// CLOUDMEM_EMULATORS); tests skip with the reason when it is absent unless CLOUDMEM_REQUIRE_FIXTURES=1.
/// </summary>
public sealed class AzuriteHost : IDisposable
{
    /// <summary>azurite's well-known development account (public, documented emulator credentials).</summary>
    public const string Account = "devstoreaccount1";

    /// <summary>The emulator's documented development key (not a secret; the same for every azurite).</summary>
    public const string Key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFqTrdZs7ZkyrJ+w4fFA==";

    private readonly Process _process;
    private readonly string _workspace;

    private AzuriteHost(Process process, int port, string workspace)
    {
        _process = process;
        _workspace = workspace;
        Port = port;
    }

    public int Port { get; }

    public Uri ServiceUri => new($"http://127.0.0.1:{Port}/{Account}");

    public StorageSharedKeyCredential Credential => new(Account, Key);

    /// <summary>Where azurite-blob is, or null.</summary>
    public static string? Locate()
    {
        string root = Environment.GetEnvironmentVariable("CLOUDMEM_EMULATORS") is { Length: > 0 } fromEnv
            ? fromEnv
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache", "cloudmem", "emulators");
        string bin = Path.Combine(root, "azurite", "node_modules", ".bin", "azurite-blob");
        return File.Exists(bin) ? bin : null;
    }

    /// <summary>Starts azurite, or skips the test (fails when emulators are required).</summary>
    public static AzuriteHost Start()
    {
        string? bin = Locate();
        if (bin is null && Environment.GetEnvironmentVariable("CLOUDMEM_REQUIRE_FIXTURES") == "1")
        {
            throw new InvalidOperationException("azurite is required (CLOUDMEM_REQUIRE_FIXTURES=1) but missing: run tests/emulators/setup.sh");
        }
        Skip.If(bin is null, "azurite not installed: run tests/emulators/setup.sh");
        int port = FreePort();
        string workspace = Path.Combine(Path.GetTempPath(), "cloudmem-azurite-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(workspace);
        var start = new ProcessStartInfo(bin!)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = workspace,
        };
        foreach (string arg in new[]
        {
            "--blobHost", "127.0.0.1", "--blobPort", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
            "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--silent", "--disableTelemetry",
            "--location", workspace,
        })
        {
            start.ArgumentList.Add(arg);
        }
        Process process = Process.Start(start)!;
        process.OutputDataReceived += (_, _) => { };
        process.ErrorDataReceived += (_, _) => { };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var host = new AzuriteHost(process, port, workspace);
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < TimeSpan.FromSeconds(30))
        {
            if (process.HasExited)
            {
                host.Dispose();
                throw new InvalidOperationException($"azurite exited with code {process.ExitCode} at start");
            }
            try
            {
                using var client = new TcpClient();
                client.Connect(IPAddress.Loopback, port);
                return host;
            }
            catch (SocketException)
            {
                Thread.Sleep(100);
            }
        }
        host.Dispose();
        throw new InvalidOperationException("azurite did not listen within 30 s");
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(10_000);
            }
        }
        catch (InvalidOperationException)
        {
        }
        _process.Dispose();
        try
        {
            Directory.Delete(_workspace, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
