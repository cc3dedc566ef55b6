using System.Buffers.Text;
using System.Formats.Asn1;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Nodes;
using Azure;
using Azure.Core;
using Azure.Core.Pipeline;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.Azure;

/// <summary>Where a Key Vault key is and how to reach it.</summary>
/// <param name="KeyUri">https://VAULT.vault.azure.net/keys/NAME[/VERSION]; without a version the current one is pinned at start.</param>
/// <param name="Algorithm">RS256, PS256 or ES256; null: ES256 for an EC P-256 key, PS256 for an RSA key.</param>
/// <param name="Transport">A transport instead of the default (tests: one trusting only their certificate).</param>
public sealed record KeyVaultKeySettings(Uri KeyUri, string? Algorithm = null, HttpPipelineTransport? Transport = null);

/// <summary>
/// <see cref="IManifestSigner"/> on an Azure Key Vault key through the documented REST API (api-version 7.4): GET the
/// key once (its public JWK becomes the SubjectPublicKeyInfo recorded in the signature file; its kid pins the
/// version), then POST <c>{kid}/sign</c> with the SHA-256 digest for every manifest. The private key never leaves the
/// vault. No Key Vault SDK package is available here, so the calls go through Azure.Core's <see cref="HttpPipeline"/>
/// (retries, logging) with a bearer token for https://vault.azure.net/.default from the given credential
/// (DefaultAzureCredential in the CLI). ES256 signatures come back as JWS r||s and are re-encoded as DER, the form
/// every other backend writes; RS256/PS256 signatures are kept as they are. The identity needs the keys/get and
/// keys/sign data actions on the key (e.g. "Key Vault Crypto User").
/// </summary>
public sealed class KeyVaultManifestSigner : IManifestSigner
{
    /// <summary>The REST API version used.</summary>
    public const string ApiVersion = "7.4";

    /// <summary>The token scope.</summary>
    public const string Scope = "https://vault.azure.net/.default";

    private const int MaxResponseBytes = 64 * 1024;
    private readonly HttpPipeline _pipeline;
    private readonly Uri _kid;
    private readonly string _jwsAlgorithm;

    private KeyVaultManifestSigner(HttpPipeline pipeline, Uri kid, string jwsAlgorithm, byte[] publicKey)
    {
        _pipeline = pipeline;
        _kid = kid;
        _jwsAlgorithm = jwsAlgorithm;
        PublicKey = publicKey;
        SignatureAlgorithm = ManifestSignatureAlgorithms.FromJws(jwsAlgorithm);
    }

    /// <inheritdoc />
    public string Signer => $"azure-keyvault:{_kid}";

    /// <inheritdoc />
    public byte[] PublicKey { get; }

    /// <inheritdoc />
    public string SignatureAlgorithm { get; }

    private sealed class VaultClientOptions : ClientOptions;

    /// <summary>Reads the key, checks it can sign with the algorithm, and keeps its public key and version.</summary>
    /// <exception cref="CaptureException">unreachable, refused, disabled, or not a key this algorithm signs with.</exception>
    public static async Task<KeyVaultManifestSigner> CreateAsync(TokenCredential credential, KeyVaultKeySettings settings, CancellationToken cancellationToken)
    {
        Uri keyUri = settings.KeyUri;
        string[] segments = keyUri.AbsolutePath.Trim('/').Split('/');
        if (keyUri.Scheme != Uri.UriSchemeHttps || segments.Length is < 2 or > 3 || segments[0] != "keys")
        {
            throw new CaptureException($"Key Vault key {keyUri}: expected https://VAULT.vault.azure.net/keys/NAME or .../keys/NAME/VERSION");
        }
        var options = new VaultClientOptions();
        if (settings.Transport is not null)
        {
            options.Transport = settings.Transport;
        }
        HttpPipeline pipeline = HttpPipelineBuilder.Build(options, new BearerTokenAuthenticationPolicy(credential, Scope));
        JsonObject body = await SendAsync(pipeline, RequestMethod.Get, new Uri(keyUri.GetLeftPart(UriPartial.Path).TrimEnd('/') + $"?api-version={ApiVersion}"), null, "get key", cancellationToken).ConfigureAwait(false);
        if (body["attributes"]?["enabled"]?.GetValue<bool>() == false)
        {
            throw new CaptureException($"Key Vault key {keyUri} is disabled");
        }
        JsonObject jwk = body["key"] as JsonObject ?? throw new CaptureException($"Key Vault key {keyUri}: the answer has no 'key'");
        string kid = jwk["kid"]?.GetValue<string>() ?? throw new CaptureException($"Key Vault key {keyUri}: the key has no 'kid'");
        if (!Uri.TryCreate(kid, UriKind.Absolute, out Uri? kidUri) || kidUri.Host != keyUri.Host || kidUri.AbsolutePath.Trim('/').Split('/').Length != 3)
        {
            throw new CaptureException($"Key Vault key {keyUri}: kid '{kid}' is not a versioned key of that vault");
        }
        if (jwk["key_ops"] is JsonArray ops && !ops.Any(o => o?.GetValue<string>() == "sign"))
        {
            throw new CaptureException($"Key Vault key {kid} does not allow 'sign' (key_ops: {string.Join(",", ops.Select(o => o?.GetValue<string>()))})");
        }
        (byte[] spki, string algorithm) = PublicKeyFromJwk(jwk, settings.Algorithm, kid);
        return new KeyVaultManifestSigner(pipeline, kidUri, algorithm, spki);
    }

    /// <summary>The synchronous form the CLI uses.</summary>
    public static KeyVaultManifestSigner Create(TokenCredential credential, KeyVaultKeySettings settings)
        => CreateAsync(credential, settings, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>The JWK's public key as DER SubjectPublicKeyInfo, and the JWS algorithm to sign with.</summary>
    internal static (byte[] Spki, string Algorithm) PublicKeyFromJwk(JsonObject jwk, string? wanted, string kid)
    {
        string kty = jwk["kty"]?.GetValue<string>() ?? "";
        if (kty is "EC" or "EC-HSM")
        {
            string crv = jwk["crv"]?.GetValue<string>() ?? "";
            if (crv != "P-256" || (wanted ?? "ES256") != "ES256")
            {
                throw new CaptureException($"Key Vault key {kid} is EC {crv}: manifests need P-256 with ES256{(wanted is null ? "" : $", not {wanted}")}");
            }
            using var ec = ECDsa.Create(new ECParameters
            {
                Curve = ECCurve.NamedCurves.nistP256,
                Q = new ECPoint { X = Field(jwk, "x", kid, 32), Y = Field(jwk, "y", kid, 32) },
            });
            return (ec.ExportSubjectPublicKeyInfo(), "ES256");
        }
        if (kty is "RSA" or "RSA-HSM")
        {
            string algorithm = wanted ?? "PS256";
            if (algorithm is not ("RS256" or "PS256"))
            {
                throw new CaptureException($"Key Vault key {kid} is RSA: manifests sign with RS256 or PS256, not {algorithm}");
            }
            using var rsa = RSA.Create(new RSAParameters { Modulus = Field(jwk, "n", kid, null), Exponent = Field(jwk, "e", kid, null) });
            if (rsa.KeySize < 2048)
            {
                throw new CaptureException($"Key Vault key {kid} is RSA-{rsa.KeySize}: at least 2048 bits needed");
            }
            return (rsa.ExportSubjectPublicKeyInfo(), algorithm);
        }
        throw new CaptureException($"Key Vault key {kid} has key type '{kty}': manifests need an EC P-256 or RSA key");
    }

    private static byte[] Field(JsonObject jwk, string name, string kid, int? length)
    {
        string text = jwk[name]?.GetValue<string>() ?? throw new CaptureException($"Key Vault key {kid}: JWK has no '{name}'");
        byte[] value;
        try
        {
            value = Base64Url.DecodeFromChars(text);
        }
        catch (FormatException e)
        {
            throw new CaptureException($"Key Vault key {kid}: JWK '{name}' is not base64url", e);
        }
        if (value.Length == 0 || value.Length > 1024 || (length is { } n && value.Length != n))
        {
            throw new CaptureException($"Key Vault key {kid}: JWK '{name}' is {value.Length} bytes{(length is { } m ? $", not {m}" : "")}");
        }
        return value;
    }

    /// <inheritdoc />
    public byte[] SignDigest(byte[] sha256)
    {
        var request = new JsonObject { ["alg"] = _jwsAlgorithm, ["value"] = Base64Url.EncodeToString(sha256) };
        var uri = new Uri($"{_kid.GetLeftPart(UriPartial.Path).TrimEnd('/')}/sign?api-version={ApiVersion}");
        JsonObject body = SendAsync(_pipeline, RequestMethod.Post, uri, request, "sign", CancellationToken.None).GetAwaiter().GetResult();
        string value = body["value"]?.GetValue<string>() ?? throw new CaptureException($"Key Vault sign with {_kid}: the answer has no 'value'");
        byte[] signature;
        try
        {
            signature = Base64Url.DecodeFromChars(value);
        }
        catch (FormatException e)
        {
            throw new CaptureException($"Key Vault sign with {_kid}: 'value' is not base64url", e);
        }
        if (_jwsAlgorithm != "ES256")
        {
            return signature;
        }
        if (signature.Length != 64)
        {
            throw new CaptureException($"Key Vault sign with {_kid}: an ES256 signature of {signature.Length} bytes, not 64");
        }
        return P1363ToDer(signature);
    }

    /// <summary>JWS ECDSA (r||s, fixed width) to DER SEQUENCE { INTEGER r, INTEGER s } (RFC 3279).</summary>
    internal static byte[] P1363ToDer(ReadOnlySpan<byte> rs)
    {
        int half = rs.Length / 2;
        var writer = new AsnWriter(AsnEncodingRules.DER);
        using (writer.PushSequence())
        {
            writer.WriteIntegerUnsigned(rs[..half].TrimStart((byte)0) is { Length: > 0 } r ? r : [0]);
            writer.WriteIntegerUnsigned(rs[half..].TrimStart((byte)0) is { Length: > 0 } s ? s : [0]);
        }
        return writer.Encode();
    }

    private static async Task<JsonObject> SendAsync(HttpPipeline pipeline, RequestMethod method, Uri uri, JsonObject? body, string what, CancellationToken cancellationToken)
    {
        using HttpMessage message = pipeline.CreateMessage();
        message.Request.Method = method;
        message.Request.Uri.Reset(uri);
        message.Request.Headers.Add("Accept", "application/json");
        if (body is not null)
        {
            message.Request.Headers.Add("Content-Type", "application/json");
            message.Request.Content = RequestContent.Create(BinaryData.FromString(body.ToJsonString()));
        }
        try
        {
            await pipeline.SendAsync(message, cancellationToken).ConfigureAwait(false);
        }
        catch (RequestFailedException e)
        {
            throw new CaptureException($"Key Vault {what} {uri.GetLeftPart(UriPartial.Path)}: {CaptureException.OneLine(e.Message)}", e);
        }
        Response response = message.Response;
        BinaryData content = response.Content;
        string requestId = response.Headers.TryGetValue("x-ms-request-id", out string? id) ? $" (x-ms-request-id {id})" : "";
        if (response.Status is < 200 or > 299)
        {
            string error = "";
            try
            {
                error = JsonNode.Parse(content.ToMemory().Span[..Math.Min(content.ToMemory().Length, MaxResponseBytes)])?["error"]?["message"]?.GetValue<string>() ?? "";
            }
            catch (JsonException)
            {
            }
            throw new CaptureException($"Key Vault {what} {uri.GetLeftPart(UriPartial.Path)}: HTTP {response.Status}{requestId}{(error.Length > 0 ? ": " + CaptureException.OneLine(error) : "")}");
        }
        if (content.ToMemory().Length > MaxResponseBytes)
        {
            throw new CaptureException($"Key Vault {what} {uri.GetLeftPart(UriPartial.Path)}: answer of {content.ToMemory().Length} bytes is over {MaxResponseBytes}");
        }
        try
        {
            return JsonNode.Parse(content.ToMemory().Span) as JsonObject
                ?? throw new CaptureException($"Key Vault {what} {uri.GetLeftPart(UriPartial.Path)}: the answer is not a JSON object{requestId}");
        }
        catch (JsonException e)
        {
            throw new CaptureException($"Key Vault {what} {uri.GetLeftPart(UriPartial.Path)}: the answer is not JSON{requestId}", e);
        }
    }
}
