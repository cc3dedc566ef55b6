using Amazon.KeyManagementService;
using Amazon.KeyManagementService.Model;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Aws;

/// <summary>
/// <see cref="IManifestSigner"/> on an AWS KMS asymmetric key (key spec ECC_NIST_P256, usage SIGN_VERIFY): the private
/// key never leaves KMS; Sign with MessageType DIGEST and ECDSA_SHA_256 returns the DER signature the verifier expects,
/// GetPublicKey the DER SubjectPublicKeyInfo (checked once, when the signer is made). Owns the client.
/// </summary>
/// <remarks>
/// <see cref="SignDigest"/> blocks on the SDK's asynchronous call (manifests are written synchronously); it is called
/// once per manifest write. The role needs kms:GetPublicKey and kms:Sign on the key (not granted by the template).
/// </remarks>
public sealed class KmsManifestSigner : IManifestSigner, IDisposable
{
    private readonly IAmazonKeyManagementService _kms;
    private readonly AwsCalls _calls = new(null);
    private readonly string _keyId;

    private KmsManifestSigner(IAmazonKeyManagementService kms, string keyArn, byte[] publicKey)
    {
        _kms = kms;
        _keyId = keyArn;
        PublicKey = publicKey;
    }

    /// <inheritdoc />
    public string Signer => $"aws-kms:{_keyId}";

    /// <inheritdoc />
    public byte[] PublicKey { get; }

    /// <summary>Checks the key (P-256, sign/verify, ECDSA_SHA_256) and keeps its public key.</summary>
    /// <exception cref="CaptureException">the key is missing, not reachable, or not a P-256 signing key.</exception>
    public static async Task<KmsManifestSigner> CreateAsync(IAmazonKeyManagementService kms, string keyId, CancellationToken cancellationToken)
    {
        GetPublicKeyResponse key = await new AwsCalls(null).Run("kms", "GetPublicKey", t => kms.GetPublicKeyAsync(new GetPublicKeyRequest { KeyId = keyId }, t), cancellationToken).ConfigureAwait(false);
        string spec = key.KeySpec?.Value ?? "unknown";
        if (spec != KeySpec.ECC_NIST_P256.Value || key.KeyUsage?.Value != KeyUsageType.SIGN_VERIFY.Value)
        {
            throw new CaptureException($"KMS key {keyId} is {spec} for {key.KeyUsage?.Value ?? "unknown"}: manifests need an ECC_NIST_P256 SIGN_VERIFY key");
        }
        if (key.SigningAlgorithms is { } algorithms && !algorithms.Contains(SigningAlgorithmSpec.ECDSA_SHA_256.Value))
        {
            throw new CaptureException($"KMS key {keyId} does not sign with ECDSA_SHA_256");
        }
        return new KmsManifestSigner(kms, key.KeyId ?? keyId, key.PublicKey.ToArray());
    }

    /// <summary>Builds the client for <paramref name="connection"/> (endpoint <see cref="AwsEndpoints.Kms"/>) and checks the key.</summary>
    public static KmsManifestSigner Create(AwsConnection connection, string keyId)
    {
        var config = AwsClients.ConfigureClient(new AmazonKeyManagementServiceConfig(), connection, connection.Endpoints.Kms);
        var client = new AmazonKeyManagementServiceClient(AwsClients.CredentialsFor(connection, config), config);
        try
        {
            return CreateAsync(client, keyId, CancellationToken.None).GetAwaiter().GetResult();
        }
        catch
        {
            client.Dispose();
            throw;
        }
    }

    /// <inheritdoc />
    public byte[] SignDigest(byte[] sha256)
    {
        using var digest = new MemoryStream(sha256, writable: false);
        SignResponse signed = _calls.Run("kms", "Sign", t => _kms.SignAsync(new SignRequest
        {
            KeyId = _keyId,
            Message = digest,
            MessageType = MessageType.DIGEST,
            SigningAlgorithm = SigningAlgorithmSpec.ECDSA_SHA_256,
        }, t), CancellationToken.None).GetAwaiter().GetResult();
        return signed.Signature.ToArray();
    }

    /// <inheritdoc />
    public void Dispose() => _kms.Dispose();
}
