using System.Security.Cryptography.X509Certificates;
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
        : this(https: false)
    {
    }

    /// <summary>With <paramref name="https"/>: TLS with a certificate made here (PEM files in the workspace) and
    /// --oauth basic, so bearer tokens and user delegation keys work (Azure.Core sends tokens over https only).</summary>
    internal AzuriteHost(bool https, bool allServices = false)
    {
        Https = https;
        _process = new Lazy<EmulatorProcess>(() =>
        {
            string bin = Emulators.Require(Path.Combine("azurite", "node_modules", ".bin", allServices ? "azurite" : "azurite-blob"));
            Directory.CreateDirectory(_workspace);
            int port = Emulators.FreePort();
            var args = new List<string>
            {
                "--blobHost", "127.0.0.1", "--blobPort", port.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--inMemoryPersistence", "--skipApiVersionCheck", "--loose", "--disableTelemetry",
            };
            if (allServices)
            {
                _queuePort = Emulators.FreePort();
                _tablePort = Emulators.FreePort();
                args.AddRange(["--queueHost", "127.0.0.1", "--queuePort", _queuePort.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    "--tableHost", "127.0.0.1", "--tablePort", _tablePort.ToString(System.Globalization.CultureInfo.InvariantCulture)]);
            }
            if (https)
            {
                File.WriteAllText(CertificatePemPath, Certificate!.ExportCertificatePem());
                using var key = Certificate.GetECDsaPrivateKey()!;
                File.WriteAllText(Path.Combine(_workspace, "key.pem"), key.ExportPkcs8PrivateKeyPem());
                args.AddRange(["--cert", CertificatePemPath, "--key", Path.Combine(_workspace, "key.pem"), "--oauth", "basic"]);
            }
            var process = new EmulatorProcess(bin, args, port, _workspace);
            if (allServices)
            {
                Emulators.WaitForPort(_queuePort, TimeSpan.FromSeconds(30));
                Emulators.WaitForPort(_tablePort, TimeSpan.FromSeconds(30));
            }
            return process;
        });
        if (https)
        {
            Certificate = MakeCertificate();
        }
    }

    public bool Https { get; }

    private int _queuePort;
    private int _tablePort;

    /// <summary>The account's connection string with all three endpoints (only for a host made with all services).</summary>
    public string ConnectionString
    {
        get
        {
            int blob = Port;
            return $"DefaultEndpointsProtocol=http;AccountName={Account};AccountKey={Key};BlobEndpoint=http://127.0.0.1:{blob}/{Account};"
                + $"QueueEndpoint=http://127.0.0.1:{_queuePort}/{Account};TableEndpoint=http://127.0.0.1:{_tablePort}/{Account};";
        }
    }

    /// <summary>The TLS certificate (https only).</summary>
    public System.Security.Cryptography.X509Certificates.X509Certificate2? Certificate { get; }

    /// <summary>The certificate as PEM (for curl's CURL_CA_BUNDLE in the guest).</summary>
    public string CertificatePemPath => Path.Combine(_workspace, "cert.pem");

    /// <summary>Starts azurite on first use (skipping the test when it is not installed).</summary>
    public int Port => _process.Value.Port;

    public Uri ServiceUri => new($"{(Https ? "https" : "http")}://127.0.0.1:{Port}/{Account}");

    public StorageSharedKeyCredential Credential => new(Account, Key);

    /// <summary>Client options trusting exactly this azurite's certificate (https), or defaults.</summary>
    public BlobClientOptions ClientOptions()
    {
        var options = new BlobClientOptions();
        if (Certificate is not null)
        {
            byte[] raw = Certificate.RawData;
            options.Transport = new global::Azure.Core.Pipeline.HttpClientTransport(new HttpClientHandler
            {
                ServerCertificateCustomValidationCallback = (_, cert, _, _) => cert is not null && cert.RawData.AsSpan().SequenceEqual(raw),
            });
        }
        return options;
    }

    public BlobServiceClient Service => new(ServiceUri, Credential, ClientOptions());

    private static System.Security.Cryptography.X509Certificates.X509Certificate2 MakeCertificate()
    {
        using var key = System.Security.Cryptography.ECDsa.Create(System.Security.Cryptography.ECCurve.NamedCurves.nistP256);
        var request = new System.Security.Cryptography.X509Certificates.CertificateRequest("CN=127.0.0.1", key, System.Security.Cryptography.HashAlgorithmName.SHA256);
        var san = new System.Security.Cryptography.X509Certificates.SubjectAlternativeNameBuilder();
        san.AddIpAddress(System.Net.IPAddress.Loopback);
        request.CertificateExtensions.Add(san.Build());
        request.CertificateExtensions.Add(new System.Security.Cryptography.X509Certificates.X509BasicConstraintsExtension(false, false, 0, false));
        return request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddHours(2));
    }

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
