using Amazon.S3;
using Amazon.S3.Model;
using Azure.Storage.Blobs;
using CloudMem.RemoteCaptures;
using CloudMem.Tests.Connectors.Aws;
using CloudMem.Tests.Connectors.Azure;

namespace CloudMem.Tests.Remote;

/// <summary>
/// s3rver and azurite on 127.0.0.1 (installed by tests/emulators/setup.sh), started once for the remote-capture tests,
/// with each capture uploaded once on first use. Environments are passed to the code under test explicitly (the
/// process environment is left alone), as the CLI would read them from its own.
/// </summary>
public sealed class RemoteStores : IDisposable
{
    public const string Bucket = "evidence";
    public const string AccessKey = "AKIDREMOTETEST";
    public const string SecretKey = "remote-test-secret-key-do-not-print";

    private readonly Lazy<S3Emulator> _s3 = new(() => new S3Emulator(Bucket, AccessKey, SecretKey));
    private readonly Lazy<AzuriteHost> _azurite = new(() => new AzuriteHost());
    private readonly Lazy<string> _container;
    private readonly Dictionary<string, Task> _uploads = [];

    public RemoteStores()
    {
        _container = new Lazy<string>(() => _azurite.Value.NewContainer());
    }

    public S3Emulator S3 => _s3.Value;

    public AzuriteHost Azurite => _azurite.Value;

    /// <summary>The environment a user of s3rver would have (endpoint, region, key pair); <paramref name="endpoint"/> overrides the endpoint (a proxy).</summary>
    public Dictionary<string, string> S3Environment(string? endpoint = null, string secret = SecretKey, string accessKey = AccessKey) => new()
    {
        ["AWS_ACCESS_KEY_ID"] = accessKey,
        ["AWS_SECRET_ACCESS_KEY"] = secret,
        ["AWS_ENDPOINT_URL_S3"] = endpoint ?? S3.Url,
        ["AWS_REGION"] = "us-east-1",
    };

    /// <summary>The environment a user of azurite would have: its connection string.</summary>
    public Dictionary<string, string> BlobEnvironment() => new()
    {
        ["AZURE_STORAGE_CONNECTION_STRING"] = $"DefaultEndpointsProtocol=http;AccountName={AzuriteHost.Account};AccountKey={AzuriteHost.Key};BlobEndpoint={Azurite.ServiceUri};",
    };

    public static Func<string, string?> Lookup(IReadOnlyDictionary<string, string> environment) => name => environment.GetValueOrDefault(name);

    public string S3Url(string key) => $"s3://{Bucket}/{key}";

    public string BlobUrl(string name) => $"{Azurite.ServiceUri}/{_container.Value}/{name}";

    public IAmazonS3 S3Client() => S3RangeReader.CreateClient(Lookup(S3Environment()));

    /// <summary>Uploads <paramref name="path"/> as <paramref name="key"/> to the store once ("s3" or "blob").</summary>
    public void Upload(string store, string path, string key)
    {
        Task upload;
        lock (_uploads)
        {
            if (!_uploads.TryGetValue($"{store}:{key}", out upload!))
            {
                upload = store == "s3" ? UploadS3Async(path, key) : UploadBlobAsync(path, key);
                _uploads[$"{store}:{key}"] = upload;
            }
        }
        upload.GetAwaiter().GetResult();
    }

    /// <summary>A remote URL of <paramref name="path"/> in <paramref name="store"/>, uploading it first if needed.</summary>
    public string Url(string store, string path, string key)
    {
        Upload(store, path, key);
        return store == "s3" ? S3Url(key) : BlobUrl(key);
    }

    public Func<string, string?> Environment(string store) => Lookup(store == "s3" ? S3Environment() : BlobEnvironment());

    private async Task UploadS3Async(string path, string key)
    {
        using IAmazonS3 s3 = S3Client();
        await s3.PutObjectAsync(new PutObjectRequest { BucketName = Bucket, Key = key, FilePath = path, UseChunkEncoding = false });
    }

    private async Task UploadBlobAsync(string path, string name)
    {
        var container = new BlobContainerClient(new Uri($"{Azurite.ServiceUri}/{_container.Value}"), Azurite.Credential);
        await container.GetBlobClient(name).UploadAsync(path, overwrite: true);
    }

    public void Dispose()
    {
        if (_s3.IsValueCreated)
        {
            _s3.Value.Dispose();
        }
        if (_azurite.IsValueCreated)
        {
            _azurite.Value.Dispose();
        }
    }
}
