using System.Text;
using Azure.Core;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// A TokenCredential for tests: hands out an unsigned JWT-shaped token (azurite's --oauth basic accepts those) and
/// remembers every token it issued so tests can search outputs for them.
/// </summary>
public sealed class FakeTokenCredential : TokenCredential
{
    private readonly List<string> _issued = [];

    public IReadOnlyList<string> Issued
    {
        get
        {
            lock (_issued)
            {
                return _issued.ToArray();
            }
        }
    }

    public int Requests { get; private set; }

    public override AccessToken GetToken(TokenRequestContext requestContext, CancellationToken cancellationToken)
    {
        string scope = requestContext.Scopes.FirstOrDefault() ?? "";
        string audience = scope.EndsWith("/.default", StringComparison.Ordinal) ? scope[..^"/.default".Length] : scope;
        DateTimeOffset expires = DateTimeOffset.UtcNow.AddHours(1);
        string header = B64("{\"alg\":\"RS256\",\"typ\":\"JWT\"}");
        string payload = B64($"{{\"aud\":\"{audience}\",\"iss\":\"https://sts.windows.net/ab1f708d-50f6-404c-a006-d71b2ac7a606/\"," +
            $"\"iat\":{DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeSeconds()},\"nbf\":{DateTimeOffset.UtcNow.AddMinutes(-5).ToUnixTimeSeconds()},\"exp\":{expires.ToUnixTimeSeconds()}," +
            $"\"oid\":\"00000000-0000-0000-0000-00000000c10d\",\"tid\":\"ab1f708d-50f6-404c-a006-d71b2ac7a606\",\"jti\":\"{Guid.NewGuid():N}\"}}");
        string token = $"{header}.{payload}.{B64(Guid.NewGuid().ToString("N"))}";
        lock (_issued)
        {
            _issued.Add(token);
            Requests++;
        }
        return new AccessToken(token, expires);
    }

    public override ValueTask<AccessToken> GetTokenAsync(TokenRequestContext requestContext, CancellationToken cancellationToken)
        => new(GetToken(requestContext, cancellationToken));

    private static string B64(string text) => Convert.ToBase64String(Encoding.UTF8.GetBytes(text)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
}
