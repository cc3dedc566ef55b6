using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// A local HTTPS server implementing exactly the two Key Vault REST calls the signer makes (api-version 7.4), in the
/// documented shape: <c>GET /keys/{name}[/{version}]</c> answers <c>{"key": JWK with kid, kty, key_ops, n/e or crv/x/y},
/// "attributes": {"enabled": ...}}</c>, and <c>POST /keys/{name}/{version}/sign</c> takes <c>{"alg", "value": base64url
/// digest}</c> and answers <c>{"kid", "value": base64url signature}</c> (ES256 as JWS r||s). No Key Vault emulator
/// exists, so this is a transport test: the keys and signatures are real .NET RSA/ECDSA, and what the signer sends is
/// checked here (bearer token, api-version, algorithm matching the key, 32-byte digest).
/// </summary>
public sealed class FakeKeyVault : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, (AsymmetricAlgorithm Key, string Version, bool Enabled)> _keys = new();

    public FakeKeyVault()
    {
        Certificate = FakeArm.MakeCertificate();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, o => o.UseHttps(Certificate)));
        _app = builder.Build();
        _app.Run(HandleAsync);
        _app.StartAsync().GetAwaiter().GetResult();
        Endpoint = new Uri(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
    }

    public X509Certificate2 Certificate { get; }

    public Uri Endpoint { get; }

    /// <summary>"METHOD path?query" of every request, and its Authorization header.</summary>
    public ConcurrentQueue<(string Request, string? Authorization)> Calls { get; } = new();

    /// <summary>Number of sign operations served.</summary>
    public int Signs => Calls.Count(c => c.Request.StartsWith("POST", StringComparison.Ordinal));

    /// <summary>Adds a key; returns its unversioned URL.</summary>
    public Uri AddKey(string name, AsymmetricAlgorithm key, bool enabled = true)
    {
        _keys[name] = (key, Guid.NewGuid().ToString("N"), enabled);
        return new Uri(Endpoint, $"keys/{name}");
    }

    /// <summary>The versioned kid of a key.</summary>
    public Uri Kid(string name) => new(Endpoint, $"keys/{name}/{_keys[name].Version}");

    /// <summary>An HttpClientHandler that trusts exactly this server's certificate.</summary>
    public HttpClientHandler CreateHandler() => new()
    {
        ServerCertificateCustomValidationCallback = (_, cert, _, _) => cert is not null && cert.RawData.AsSpan().SequenceEqual(Certificate.RawData),
    };

    private async Task HandleAsync(HttpContext context)
    {
        HttpRequest request = context.Request;
        Calls.Enqueue(($"{request.Method} {request.Path}{request.QueryString}", request.Headers.Authorization.ToString()));
        if (request.Query["api-version"] != "7.4")
        {
            await Error(context, 400, "BadParameter", "api-version 7.4 expected");
            return;
        }
        if (!request.Headers.Authorization.ToString().StartsWith("Bearer ", StringComparison.Ordinal))
        {
            context.Response.Headers.WWWAuthenticate = "Bearer authorization=\"https://login.microsoftonline.com/tenant\", resource=\"https://vault.azure.net\"";
            await Error(context, 401, "Unauthorized", "AKV10000: Request is missing a Bearer or PoP token.");
            return;
        }
        string[] parts = request.Path.Value!.Trim('/').Split('/');
        if (parts.Length < 2 || parts[0] != "keys" || !_keys.TryGetValue(parts[1], out var key))
        {
            await Error(context, 404, "KeyNotFound", $"A key with (name/id) {(parts.Length > 1 ? parts[1] : "")} was not found in this key vault.");
            return;
        }
        string kid = Kid(parts[1]).ToString();
        if (request.Method == "GET" && (parts.Length == 2 || (parts.Length == 3 && parts[2] == key.Version)))
        {
            await Json(context, 200, new JsonObject
            {
                ["key"] = Jwk(key.Key, kid),
                ["attributes"] = new JsonObject { ["enabled"] = key.Enabled, ["recoveryLevel"] = "Recoverable+Purgeable" },
            });
            return;
        }
        if (request.Method == "POST" && parts.Length == 4 && parts[2] == key.Version && parts[3] == "sign")
        {
            JsonNode body = (await JsonNode.ParseAsync(request.Body))!;
            string alg = body["alg"]!.GetValue<string>();
            byte[] digest = Base64Url.DecodeFromChars(body["value"]!.GetValue<string>());
            if (digest.Length != 32)
            {
                await Error(context, 400, "BadParameter", "Invalid length of 'value' for SHA-256 digest.");
                return;
            }
            byte[]? signature = (key.Key, alg) switch
            {
                (ECDsa ec, "ES256") => ec.SignHash(digest, DSASignatureFormat.IeeeP1363FixedFieldConcatenation),
                (RSA rsa, "RS256") => rsa.SignHash(digest, HashAlgorithmName.SHA256, RSASignaturePadding.Pkcs1),
                (RSA rsa, "PS256") => rsa.SignHash(digest, HashAlgorithmName.SHA256, RSASignaturePadding.Pss),
                _ => null,
            };
            if (signature is null)
            {
                await Error(context, 400, "BadParameter", $"Algorithm {alg} is not supported for this key type.");
                return;
            }
            await Json(context, 200, new JsonObject { ["kid"] = kid, ["value"] = Base64Url.EncodeToString(signature) });
            return;
        }
        await Error(context, 405, "MethodNotAllowed", $"{request.Method} {request.Path}");
    }

    private static JsonObject Jwk(AsymmetricAlgorithm key, string kid)
    {
        var ops = new JsonArray("sign", "verify");
        if (key is ECDsa ec)
        {
            ECParameters p = ec.ExportParameters(false);
            return new JsonObject
            {
                ["kid"] = kid, ["kty"] = "EC-HSM", ["key_ops"] = ops, ["crv"] = ec.KeySize switch { 256 => "P-256", 384 => "P-384", _ => "P-521" },
                ["x"] = Base64Url.EncodeToString(p.Q.X), ["y"] = Base64Url.EncodeToString(p.Q.Y),
            };
        }
        RSAParameters r = ((RSA)key).ExportParameters(false);
        return new JsonObject
        {
            ["kid"] = kid, ["kty"] = "RSA", ["key_ops"] = ops,
            ["n"] = Base64Url.EncodeToString(r.Modulus), ["e"] = Base64Url.EncodeToString(r.Exponent),
        };
    }

    private static Task Error(HttpContext context, int status, string code, string message)
        => Json(context, status, new JsonObject { ["error"] = new JsonObject { ["code"] = code, ["message"] = message } });

    private static async Task Json(HttpContext context, int status, JsonObject body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json; charset=utf-8";
        context.Response.Headers["x-ms-request-id"] = Guid.NewGuid().ToString();
        await context.Response.WriteAsync(body.ToJsonString());
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        Certificate.Dispose();
    }
}
