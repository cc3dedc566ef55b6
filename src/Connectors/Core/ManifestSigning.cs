using System.Globalization;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace CloudMem.Connectors.Core;

/// <summary>
/// Signs custody manifests over the SHA-256 of the manifest file's exact bytes. ECDSA P-256 signatures are DER-encoded
/// (RFC 3279), as AWS KMS returns them for ECDSA_SHA_256 and as .NET produces them with
/// <see cref="DSASignatureFormat.Rfc3279DerSequence"/>; RSA signatures (Azure Key Vault RS256/PS256) are the raw
/// PKCS#1 v1.5 or PSS (salt = 32 bytes) signature. One verifier checks every backend (<see cref="ManifestSignatureAlgorithms"/>).
/// </summary>
public interface IManifestSigner
{
    /// <summary>Where the key lives, for the signature file: "local-key", "aws-kms:ARN", "azure-keyvault:KID".</summary>
    string Signer { get; }

    /// <summary>The public key, DER SubjectPublicKeyInfo.</summary>
    byte[] PublicKey { get; }

    /// <summary>The algorithm of <see cref="SignDigest"/>'s signatures (one of <see cref="ManifestSignatureAlgorithms"/>).</summary>
    string SignatureAlgorithm => ManifestSignatureAlgorithms.EcdsaP256;

    /// <summary>Signs a SHA-256 digest; returns the signature in the form <see cref="SignatureAlgorithm"/> names.</summary>
    byte[] SignDigest(byte[] sha256);
}

/// <summary>The signature algorithms a manifest signature file may name.</summary>
public static class ManifestSignatureAlgorithms
{
    /// <summary>ECDSA on P-256 over SHA-256, DER signature (local key, AWS KMS, Key Vault ES256 re-encoded).</summary>
    public const string EcdsaP256 = "ECDSA-P256-SHA256";

    /// <summary>RSA PKCS#1 v1.5 over SHA-256 (Key Vault RS256), at least 2048 bits.</summary>
    public const string RsaPkcs1 = "RSA-PKCS1-SHA256";

    /// <summary>RSA-PSS over SHA-256 with MGF1-SHA-256 and a 32-byte salt (Key Vault PS256), at least 2048 bits.</summary>
    public const string RsaPss = "RSA-PSS-SHA256";

    /// <summary>Whether this version verifies <paramref name="algorithm"/>.</summary>
    public static bool IsKnown(string? algorithm) => algorithm is EcdsaP256 or RsaPkcs1 or RsaPss;

    /// <summary>The algorithm a JWS name (ES256, RS256, PS256) stands for.</summary>
    public static string FromJws(string jws) => jws switch
    {
        "ES256" => EcdsaP256,
        "RS256" => RsaPkcs1,
        "PS256" => RsaPss,
        _ => throw new CaptureException($"signature algorithm {jws} is not ES256, RS256 or PS256"),
    };
}

/// <summary>
/// A local ECDSA P-256 key in a PEM file ("PRIVATE KEY" PKCS#8 or "EC PRIVATE KEY"), for vSphere, Hyper-V and
/// manual captures. Thread-safe.
/// </summary>
public sealed class LocalKeySigner : IManifestSigner, IDisposable
{
    private const int MaxPemBytes = 64 * 1024;
    private readonly ECDsa _key;
    private readonly Lock _lock = new();

    private LocalKeySigner(ECDsa key)
    {
        _key = key;
        PublicKey = key.ExportSubjectPublicKeyInfo();
    }

    /// <inheritdoc />
    public string Signer => "local-key";

    /// <inheritdoc />
    public byte[] PublicKey { get; }

    /// <summary>Loads the private key; refuses anything but a P-256 key.</summary>
    /// <exception cref="CaptureException">missing, too large, not a PEM EC private key, or another curve.</exception>
    public static LocalKeySigner Load(string path)
    {
        ECDsa key = ManifestKeys.LoadEc(path, isPrivate: true);
        return new LocalKeySigner(key);
    }

    /// <summary>Makes a new P-256 key pair: the private key (PKCS#8 PEM, mode 0600) and the public key (SPKI PEM).</summary>
    /// <returns>The key id of the new key.</returns>
    public static string Generate(string privatePath, string publicPath)
    {
        if (File.Exists(privatePath) || File.Exists(publicPath))
        {
            throw new CaptureException($"{(File.Exists(privatePath) ? privatePath : publicPath)} exists: not overwritten");
        }
        using ECDsa key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var options = new FileStreamOptions { Mode = FileMode.CreateNew, Access = FileAccess.Write };
        if (!OperatingSystem.IsWindows())
        {
            options.UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite;
        }
        using (var file = new StreamWriter(privatePath, options))
        {
            file.Write(key.ExportPkcs8PrivateKeyPem());
        }
        File.WriteAllText(publicPath, key.ExportSubjectPublicKeyInfoPem());
        return ManifestKeys.KeyId(key.ExportSubjectPublicKeyInfo());
    }

    /// <inheritdoc />
    public byte[] SignDigest(byte[] sha256)
    {
        lock (_lock)
        {
            return _key.SignHash(sha256, DSASignatureFormat.Rfc3279DerSequence);
        }
    }

    /// <inheritdoc />
    public void Dispose() => _key.Dispose();
}

/// <summary>The detached signature written beside a manifest as <c>MANIFEST.sig</c> (JSON, camelCase).</summary>
public sealed record ManifestSignature
{
    /// <summary>The only format this version writes and reads.</summary>
    public const string CurrentFormat = "cloudmem-manifest-signature/1";

    /// <summary>The default algorithm (<see cref="ManifestSignatureAlgorithms.EcdsaP256"/>).</summary>
    public const string Algorithm = ManifestSignatureAlgorithms.EcdsaP256;

    /// <summary><see cref="CurrentFormat"/>.</summary>
    public required string Format { get; init; }

    /// <summary>One of <see cref="ManifestSignatureAlgorithms"/>.</summary>
    public required string SignatureAlgorithm { get; init; }

    /// <summary>Where the key lives ("local-key", "aws-kms:ARN").</summary>
    public required string Signer { get; init; }

    /// <summary>"sha256:" + hex SHA-256 of the public key's DER SubjectPublicKeyInfo.</summary>
    public required string KeyId { get; init; }

    /// <summary>The public key (base64 DER SubjectPublicKeyInfo): convenient, but trust comes from a pinned key (--key).</summary>
    public required string PublicKey { get; init; }

    /// <summary>File name of the manifest signed.</summary>
    public required string Manifest { get; init; }

    /// <summary>Hex SHA-256 of the manifest's bytes.</summary>
    public required string ManifestSha256 { get; init; }

    /// <summary>Base64 DER ECDSA signature over that SHA-256.</summary>
    public required string Signature { get; init; }

    /// <summary>When it was signed (UTC).</summary>
    public DateTimeOffset SignedUtc { get; init; }

    internal static JsonSerializerOptions Json { get; } = new(JsonSerializerDefaults.Web) { WriteIndented = true, DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };
}

/// <summary>The result of <see cref="ManifestSigning.Verify(string, string?, string?)"/>: valid or not, with a one-line reason.</summary>
public sealed record ManifestVerification(bool Valid, string Reason, string? KeyId, bool KeyPinned);

/// <summary>Signs manifest files and verifies them (<c>cloudmem custody verify</c>).</summary>
public static class ManifestSigning
{
    /// <summary>Largest manifest or signature file read.</summary>
    public const long MaxFileBytes = 64L << 20;

    /// <summary>The signature file of a manifest.</summary>
    public static string SignaturePath(string manifestPath) => manifestPath + ".sig";

    /// <summary>Signs the file's current bytes and writes <c>FILE.sig</c> atomically; returns its path.</summary>
    public static string SignFile(string manifestPath, IManifestSigner signer)
    {
        byte[] bytes = ReadBounded(manifestPath, "manifest");
        byte[] digest = SHA256.HashData(bytes);
        var signature = new ManifestSignature
        {
            Format = ManifestSignature.CurrentFormat,
            SignatureAlgorithm = signer.SignatureAlgorithm,
            Signer = signer.Signer,
            KeyId = ManifestKeys.KeyId(signer.PublicKey),
            PublicKey = Convert.ToBase64String(signer.PublicKey),
            Manifest = Path.GetFileName(manifestPath),
            ManifestSha256 = Convert.ToHexStringLower(digest),
            Signature = Convert.ToBase64String(signer.SignDigest(digest)),
            SignedUtc = DateTimeOffset.UtcNow,
        };
        string path = SignaturePath(manifestPath);
        string temp = Path.Combine(Path.GetDirectoryName(Path.GetFullPath(path))!, $".{Path.GetFileName(path)}.{Guid.NewGuid():N}.tmp");
        try
        {
            File.WriteAllText(temp, JsonSerializer.Serialize(signature, ManifestSignature.Json));
            File.Move(temp, path, overwrite: true);
        }
        finally
        {
            if (File.Exists(temp))
            {
                File.Delete(temp);
            }
        }
        return path;
    }

    /// <summary>
    /// Verifies <paramref name="manifestPath"/> against its signature file (default <c>FILE.sig</c>). With
    /// <paramref name="trustedPublicKeyPath"/> (PEM public key) the signature must be by that key; without it, the key
    /// embedded in the signature file is used and the result says the key is not pinned.
    /// </summary>
    /// <exception cref="CaptureException">a file is missing, too large or not what it should be (one line naming it).</exception>
    public static ManifestVerification Verify(string manifestPath, string? signaturePath = null, string? trustedPublicKeyPath = null)
        => Verify(manifestPath, signaturePath, trustedPublicKeyPath is null ? null : ManifestKeys.LoadPublicSpki(trustedPublicKeyPath), trustedPublicKeyPath);

    /// <summary>
    /// As above with the trusted key given as DER SubjectPublicKeyInfo (e.g. fetched from Key Vault), named
    /// <paramref name="trustedKeyName"/> in messages.
    /// </summary>
    public static ManifestVerification Verify(string manifestPath, string? signaturePath, byte[]? trustedSpki, string? trustedKeyName)
    {
        signaturePath ??= SignaturePath(manifestPath);
        byte[] manifest = ReadBounded(manifestPath, "manifest");
        ManifestSignature signature;
        try
        {
            signature = JsonSerializer.Deserialize<ManifestSignature>(ReadBounded(signaturePath, "signature"), ManifestSignature.Json)
                ?? throw new CaptureException($"{signaturePath}: signature file is empty");
        }
        catch (JsonException e)
        {
            throw new CaptureException($"{signaturePath}: not a manifest signature: {CaptureException.OneLine(e.Message)}", e);
        }
        if (signature.Format != ManifestSignature.CurrentFormat || !ManifestSignatureAlgorithms.IsKnown(signature.SignatureAlgorithm))
        {
            throw new CaptureException($"{signaturePath}: format '{signature.Format}' / algorithm '{signature.SignatureAlgorithm}' is not {ManifestSignature.CurrentFormat} / one of {ManifestSignatureAlgorithms.EcdsaP256}, {ManifestSignatureAlgorithms.RsaPkcs1}, {ManifestSignatureAlgorithms.RsaPss}");
        }
        byte[] embedded = Base64(signature.PublicKey, signaturePath, "publicKey");
        byte[] der = Base64(signature.Signature, signaturePath, "signature");
        string embeddedId = ManifestKeys.KeyId(embedded);
        if (embeddedId != signature.KeyId)
        {
            return new(false, $"{signaturePath}: keyId {signature.KeyId} does not match its publicKey ({embeddedId})", signature.KeyId, false);
        }
        byte[] key = embedded;
        bool pinned = trustedSpki is not null;
        if (pinned)
        {
            key = trustedSpki!;
            string trustedId = ManifestKeys.KeyId(key);
            if (trustedId != signature.KeyId)
            {
                return new(false, $"signed by key {signature.KeyId}, not by the given key {trustedId} ({trustedKeyName})", signature.KeyId, true);
            }
        }
        byte[] digest = SHA256.HashData(manifest);
        string actual = Convert.ToHexStringLower(digest);
        if (!string.Equals(actual, signature.ManifestSha256, StringComparison.OrdinalIgnoreCase))
        {
            return new(false, $"{manifestPath} changed since it was signed: sha256 {actual}, signed {signature.ManifestSha256}", signature.KeyId, pinned);
        }
        string? problem = VerifyDigest(signature.SignatureAlgorithm, key, digest, der, signaturePath);
        if (problem is not null)
        {
            return new(false, problem, signature.KeyId, pinned);
        }
        return new(true, string.Create(CultureInfo.InvariantCulture, $"{Path.GetFileName(manifestPath)}: signature valid ({signature.SignatureAlgorithm}), key {signature.KeyId} ({signature.Signer}{(pinned ? ", the given key" : "; NOT pinned: pass --key to check who signed")}), signed {signature.SignedUtc:O}"), signature.KeyId, pinned);
    }

    /// <summary>Checks one signature; null when valid, else the one-line reason.</summary>
    private static string? VerifyDigest(string algorithm, byte[] spki, byte[] digest, byte[] signature, string signaturePath)
    {
        string notVerified = $"{Path.GetFileName(signaturePath)}: the signature does not verify with key {ManifestKeys.KeyId(spki)} ({algorithm})";
        try
        {
            if (algorithm == ManifestSignatureAlgorithms.EcdsaP256)
            {
                using ECDsa ec = ECDsa.Create();
                ec.ImportSubjectPublicKeyInfo(spki, out _);
                if (ec.KeySize != 256)
                {
                    return $"{signaturePath}: the key is {ec.KeySize}-bit, not P-256";
                }
                return ec.VerifyHash(digest, signature, DSASignatureFormat.Rfc3279DerSequence) ? null : notVerified;
            }
            using RSA rsa = RSA.Create();
            rsa.ImportSubjectPublicKeyInfo(spki, out _);
            if (rsa.KeySize < 2048)
            {
                return $"{signaturePath}: the key is RSA-{rsa.KeySize}, under 2048 bits";
            }
            RSASignaturePadding padding = algorithm == ManifestSignatureAlgorithms.RsaPss ? RSASignaturePadding.Pss : RSASignaturePadding.Pkcs1;
            return rsa.VerifyHash(digest, signature, HashAlgorithmName.SHA256, padding) ? null : notVerified;
        }
        catch (CryptographicException e)
        {
            throw new CaptureException($"{signaturePath}: publicKey is not a {algorithm} public key: {CaptureException.OneLine(e.Message)}", e);
        }
    }

    private static byte[] Base64(string text, string file, string field)
    {
        try
        {
            return Convert.FromBase64String(text);
        }
        catch (FormatException e)
        {
            throw new CaptureException($"{file}: {field} is not base64", e);
        }
    }

    internal static byte[] ReadBounded(string path, string what)
    {
        var info = new FileInfo(path);
        if (!info.Exists)
        {
            throw new CaptureException($"{path}: no such {what} file");
        }
        if (info.Length > MaxFileBytes)
        {
            throw new CaptureException($"{path}: {what} of {info.Length} bytes is over the {MaxFileBytes}-byte limit");
        }
        return File.ReadAllBytes(path);
    }
}

/// <summary>PEM key loading and key ids.</summary>
public static class ManifestKeys
{
    /// <summary>"sha256:" + hex SHA-256 of a DER SubjectPublicKeyInfo.</summary>
    public static string KeyId(byte[] subjectPublicKeyInfo) => "sha256:" + Convert.ToHexStringLower(SHA256.HashData(subjectPublicKeyInfo));

    /// <summary>
    /// A PEM public key ("PUBLIC KEY", SubjectPublicKeyInfo: EC P-256 or RSA, e.g. a Key Vault key exported with
    /// `az keyvault key download --encoding PEM`) as DER.
    /// </summary>
    public static byte[] LoadPublicSpki(string path)
    {
        string pem = System.Text.Encoding.ASCII.GetString(ManifestSigning.ReadBounded(path, "public key"));
        if (!PemEncoding.TryFind(pem, out PemFields fields) || pem[fields.Label] != "PUBLIC KEY")
        {
            throw new CaptureException($"{path}: not a PEM public key (-----BEGIN PUBLIC KEY-----)");
        }
        byte[] der = Convert.FromBase64String(pem[fields.Base64Data]);
        try
        {
            using RSA rsa = RSA.Create();
            rsa.ImportSubjectPublicKeyInfo(der, out _);
            return der;
        }
        catch (CryptographicException)
        {
        }
        using ECDsa ec = LoadEc(path, isPrivate: false);
        return ec.ExportSubjectPublicKeyInfo();
    }

    /// <summary>Loads a P-256 key from PEM (private: PKCS#8 or SEC1; public: SubjectPublicKeyInfo).</summary>
    public static ECDsa LoadEc(string path, bool isPrivate)
    {
        string what = isPrivate ? "private key" : "public key";
        string pem = System.Text.Encoding.ASCII.GetString(ManifestSigning.ReadBounded(path, what));
        var key = ECDsa.Create();
        try
        {
            key.ImportFromPem(pem);
        }
        catch (Exception e) when (e is ArgumentException or CryptographicException)
        {
            key.Dispose();
            throw new CaptureException($"{path}: not a PEM EC {what}: {CaptureException.OneLine(e.Message)}", e);
        }
        ECParameters parameters = key.ExportParameters(false);
        if (parameters.Curve.Oid?.Value != ECCurve.NamedCurves.nistP256.Oid.Value)
        {
            key.Dispose();
            throw new CaptureException($"{path}: the key is on curve {parameters.Curve.Oid?.FriendlyName ?? parameters.Curve.Oid?.Value ?? "unknown"}, not P-256");
        }
        if (isPrivate)
        {
            try
            {
                key.ExportParameters(true);
            }
            catch (CryptographicException e)
            {
                key.Dispose();
                throw new CaptureException($"{path}: holds no private key", e);
            }
        }
        return key;
    }
}
