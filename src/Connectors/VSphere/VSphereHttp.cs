using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using CloudMem.Connectors.Core;

namespace CloudMem.Connectors.VSphere;

/// <summary>
/// The HTTP stack every vSphere call goes through: TLS validated by default, or pinned to one SHA-256 certificate
/// thumbprint (<c>--insecure-thumbprint</c>: the usual self-signed ESXi/vCenter certificate, accepted only when its
/// SHA-256 equals the pin; nothing else is relaxed). Cookies are not kept by the handler: the clients send the session
/// themselves.
/// </summary>
public static class VSphereHttp
{
    /// <summary>Normalizes a thumbprint ("AA:BB:.." or "aabb..", 64 hex digits) to upper-case hex.</summary>
    /// <exception cref="CaptureException">not 32 bytes of hex.</exception>
    public static string NormalizeThumbprint(string thumbprint)
    {
        string hex = thumbprint.Replace(":", "", StringComparison.Ordinal).Replace(" ", "", StringComparison.Ordinal).ToUpperInvariant();
        if (hex.Length != 64 || !hex.All(Uri.IsHexDigit))
        {
            throw new CaptureException($"--insecure-thumbprint '{thumbprint}' is not a SHA-256 thumbprint (64 hex digits, colons allowed)");
        }
        return hex;
    }

    /// <summary>SHA-256 thumbprint (upper-case hex) of a certificate.</summary>
    public static string Thumbprint(X509Certificate certificate) => Convert.ToHexString(SHA256.HashData(certificate.GetRawCertData()));

    /// <summary>
    /// A handler for <paramref name="pinnedThumbprint"/> (null: normal validation). The caller owns it.
    /// </summary>
    public static SocketsHttpHandler CreateHandler(string? pinnedThumbprint)
    {
        string? pin = pinnedThumbprint is null ? null : NormalizeThumbprint(pinnedThumbprint);
        var handler = new SocketsHttpHandler
        {
            UseCookies = false,
            AutomaticDecompression = System.Net.DecompressionMethods.None,
            PooledConnectionLifetime = TimeSpan.FromMinutes(10),
            ConnectTimeout = TimeSpan.FromSeconds(30),
        };
        if (pin is not null)
        {
            handler.SslOptions = new SslClientAuthenticationOptions
            {
                RemoteCertificateValidationCallback = (_, certificate, _, errors) =>
                    errors == SslPolicyErrors.None || (certificate is not null && Thumbprint(certificate) == pin),
            };
        }
        return handler;
    }

    /// <summary>
    /// Describes a TLS or connection failure in one line (a certificate that is neither trusted nor pinned says so and
    /// names the server's thumbprint when it could be read).
    /// </summary>
    public static string DescribeConnectFailure(Uri server, Exception error)
    {
        Exception inner = error;
        while (inner.InnerException is not null && inner is not System.Security.Authentication.AuthenticationException)
        {
            inner = inner.InnerException;
        }
        return inner is System.Security.Authentication.AuthenticationException
            ? $"TLS to {server.Host}:{server.Port} failed: the certificate is not trusted (pin it with --insecure-thumbprint SHA256 after checking it out of band): {inner.Message}"
            : $"cannot reach {server.Host}:{server.Port}: {CaptureException.OneLine(inner.Message)}";
    }
}
