using System.Text.RegularExpressions;

namespace CloudMem.Connectors.Core;

/// <summary>
/// Removes secrets from text before it reaches a log, a manifest or a guest: values registered at run time (keys,
/// tokens, presigned URLs and their signatures, passwords) and well-known shapes (AWS access key ids, SigV4/SigV2 query
/// signatures and credentials, security tokens, Azure SAS <c>sig=</c>, <c>password=</c>, Authorization headers).
/// </summary>
/// <remarks>Thread-safe: values may be registered while other threads scrub.</remarks>
public sealed partial class SecretScrubber
{
    /// <summary>What replaces a secret.</summary>
    public const string Mask = "***";

    private readonly Lock _lock = new();
    private string[] _values = [];

    /// <summary>Registers a secret value (shorter than 6 characters is ignored: too likely to hit ordinary text).</summary>
    public void Register(string? secret)
    {
        if (string.IsNullOrEmpty(secret) || secret.Length < 6)
        {
            return;
        }
        lock (_lock)
        {
            if (Array.IndexOf(_values, secret) >= 0)
            {
                return;
            }
            // Longest first, so a value that contains another is masked whole.
            _values = [.. _values.Append(secret).OrderByDescending(v => v.Length)];
        }
    }

    /// <summary>Registers a URL that carries a secret (presigned, SAS): the whole URL and its query string.</summary>
    public void RegisterUrl(string url)
    {
        Register(url);
        int query = url.IndexOf('?', StringComparison.Ordinal);
        if (query >= 0 && query + 1 < url.Length)
        {
            Register(url[(query + 1)..]);
        }
    }

    /// <summary>The text with every registered value and known secret shape masked.</summary>
    public string Scrub(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return text ?? "";
        }
        string[] values = Volatile.Read(ref _values);
        foreach (string value in values)
        {
            text = text.Replace(value, Mask, StringComparison.Ordinal);
        }
        text = QueryParameterPattern().Replace(text, m => m.Groups["name"].Value + Mask);
        text = AccessKeyIdPattern().Replace(text, Mask);
        text = AssignmentPattern().Replace(text, m => m.Groups["name"].Value + m.Groups["sep"].Value + Mask);
        text = AuthorizationPattern().Replace(text, m => m.Groups["name"].Value + Mask);
        return text;
    }

    /// <summary>True when <paramref name="text"/> still holds a registered value or a known secret shape.</summary>
    public bool ContainsSecret(string? text) => !string.IsNullOrEmpty(text) && Scrub(text) != text;

    /// <summary>A URL without its query string and user info (what a presigned or SAS URL may show: where, not how).</summary>
    public static string WithoutQuery(string url)
    {
        if (!Uri.TryCreate(url, UriKind.Absolute, out Uri? uri))
        {
            int query = url.IndexOf('?', StringComparison.Ordinal);
            return query < 0 ? url : url[..query];
        }
        return uri.GetLeftPart(UriPartial.Path).Replace(uri.UserInfo + "@", "", StringComparison.Ordinal);
    }

    // Presigned-URL and SAS query parameters whose value is a secret or identifies the credential.
    [GeneratedRegex(@"(?<name>(?<=[?&\s""']|^)(X-Amz-Signature|X-Amz-Credential|X-Amz-Security-Token|Signature|AWSAccessKeyId|x-amz-security-token|sig|se-token|SharedAccessSignature)=)[^&\s""'<>]+", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex QueryParameterPattern();

    // AWS access key ids (long-term AKIA, temporary ASIA).
    [GeneratedRegex(@"\b(AKIA|ASIA)[A-Z0-9]{16}\b", RegexOptions.CultureInvariant)]
    private static partial Regex AccessKeyIdPattern();

    // name=value / "name": "value" for names that hold secrets.
    [GeneratedRegex(@"(?<name>""?\b(password|passwd|pwd|secret|secret_?access_?key|aws_secret_access_key|aws_session_token|session_?token|SessionToken|SecretAccessKey|AccountKey|client_secret)""?)(?<sep>\s*[:=]\s*""?)(?!\*\*\*)[^\s""&;,]+", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex AssignmentPattern();

    [GeneratedRegex(@"(?<name>\bAuthorization:\s*)\S.*", RegexOptions.IgnoreCase | RegexOptions.CultureInvariant)]
    private static partial Regex AuthorizationPattern();
}
