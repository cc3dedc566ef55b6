using Azure.Storage;
using Azure.Storage.Blobs;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// azurite's Blob service on a free 127.0.0.1 port, in memory (--inMemoryPersistence, --skipApiVersionCheck,
/// --loose), installed by tests/emulators/setup.sh; skips (or fails with CLOUDMEM_REQUIRE_FIXTURES=1) when absent.
/// One per test class (xunit class fixture).
/// </summary>
public sealed class AzuriteHost : IDisposable
{
    /// <summary>azurite's well-known development account.</summary>
    public const string Account = "devstoreaccount1";

    /// <summary>The emulator's published development key (the same in every azurite; the tests treat it as a secret anyway).</summary>
    public const string Key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

    private readonly Lazy<EmulatorProcess> _process;
    private readonly string _workspace = Path.Combine(Path.GetTempPath(), "cloudmem-azurite-" + Guid.NewGuid().ToString("N")[..12]);

    public AzuriteHost()
    {
        _process = new Lazy<EmulatorProcess>(() =>
        {
            string bin = Emulators.Require(Path.Combine("azurite", "node_modules", ".bin", "azurite-blob"));
            Directory.CreateDirectory(_workspace);
            int port = Emulators.FreePort();
            return new EmulatorProcess(bin,
            [
                "--blobHost", "127.0.0.1", "--blobPort", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
            ], port, _workspace);
        });
    }

    /// <summary>Starts azurite on first use (skipping the test when it is not installed).</summary>
    public int Port => _process.Value.Port;

    public Uri ServiceUri => new($"http://127.0.0.1:{Port}/{Account}");

    public StorageSharedKeyCredential Credential => new(Account, Key);

    public BlobServiceClient Service => new(ServiceUri, Credential);

    /// <summary>A new empty container; returns its name.</summary>
    public string NewContainer()
    {
        string name = "evidence" + Guid.NewGuid().ToString("N")[..10];
        Service.GetBlobContainerClient(name).Create();
        return name;
    }

    public void Dispose()
    {
        if (_process.IsValueCreated)
        {
            _process.Value.Dispose();
        }
        try
        {
            Directory.Delete(_workspace, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
