namespace CloudMem.RemoteCaptures;

/// <summary>Which store a remote capture address names.</summary>
public enum RemoteKind
{
    /// <summary>s3://bucket/key.</summary>
    S3,
    /// <summary>An Azure blob: https://ACCOUNT.blob.core.windows.net/container/blob, or an emulator's http://host:port/ACCOUNT/container/blob.</summary>
    Blob,
    /// <summary>Any other http(s) URL, read with Range requests.</summary>
    Http,
}

/// <summary>A parsed remote capture address.</summary>
/// <param name="Kind">The store.</param>
/// <param name="Uri">The address as given (it may carry a SAS token or user info: never print it).</param>
/// <param name="DisplayName">The address for messages: no user info, no query string (no SAS signature).</param>
/// <param name="Container">S3 bucket or blob container (null for HTTP).</param>
/// <param name="Key">S3 key or blob name (null for HTTP).</param>
public sealed record RemoteLocation(RemoteKind Kind, Uri Uri, string DisplayName, string? Container, string? Key)
{
    /// <summary>Whether <paramref name="text"/> looks like a remote address (s3://, http://, https://) rather than a path.</summary>
    public static bool IsRemote(string text)
        => text.StartsWith("s3://", StringComparison.OrdinalIgnoreCase)
           || text.StartsWith("https://", StringComparison.OrdinalIgnoreCase)
           || text.StartsWith("http://", StringComparison.OrdinalIgnoreCase);

    /// <summary>
    /// Parses an address. A blob is recognised by its host (*.blob.core.*), by the emulator's account as the first path
    /// segment (devstoreaccount1), or by matching the BlobEndpoint of <paramref name="connectionString"/>.
    /// </summary>
    /// <exception cref="FormatException">not an s3/http/https URL, or an S3/blob URL without a key.</exception>
    public static RemoteLocation Parse(string text, string? connectionString = null)
    {
        if (!Uri.TryCreate(text, UriKind.Absolute, out Uri? uri) || uri.Scheme is not ("s3" or "http" or "https"))
        {
            throw new FormatException($"{Redact(text)}: not an s3://, http:// or https:// address");
        }
        string display = Display(uri);
        string path = Uri.UnescapeDataString(uri.AbsolutePath.TrimStart('/'));
        if (uri.Scheme == "s3")
        {
            string bucket = uri.Host;
            if (bucket.Length == 0 || path.Length == 0)
            {
                throw new FormatException($"{display}: an S3 address is s3://BUCKET/KEY");
            }
            // Uri lower-cases the host; bucket names are lower case by rule, but take it as written.
            int start = text.IndexOf("://", StringComparison.Ordinal) + 3;
            bucket = text.Substring(start, bucket.Length);
            return new RemoteLocation(RemoteKind.S3, uri, $"s3://{bucket}/{path}", bucket, path);
        }
        string[] segments = path.Split('/', 3);
        bool accountHost = uri.Host.Contains(".blob.core.", StringComparison.OrdinalIgnoreCase);
        bool emulatorPath = segments.Length == 3 && (segments[0] == "devstoreaccount1" || MatchesBlobEndpoint(uri, connectionString, segments[0]));
        if (accountHost && segments.Length >= 2)
        {
            string[] two = path.Split('/', 2);
            return new RemoteLocation(RemoteKind.Blob, uri, display, two[0], two[1]);
        }
        if (emulatorPath)
        {
            return new RemoteLocation(RemoteKind.Blob, uri, display, segments[1], segments[2]);
        }
        return new RemoteLocation(RemoteKind.Http, uri, display, null, null);
    }

    /// <summary>
    /// A prefix of objects rather than one object: s3://BUCKET[/PREFIX], or a Blob container URL with an optional
    /// prefix (query, e.g. a SAS, kept in <see cref="Uri"/>). <see cref="Key"/> is the prefix as written after the
    /// bucket or container ("" for all of it).
    /// </summary>
    /// <exception cref="FormatException">not an s3:// or Blob container address.</exception>
    public static RemoteLocation ParsePrefix(string text, string? connectionString = null)
    {
        const string Placeholder = "/.prefix";   // makes the prefix parse as an object address
        int query = text.IndexOf('?', StringComparison.Ordinal);
        string withName = query < 0 ? text + Placeholder : text[..query] + Placeholder + text[query..];
        RemoteLocation location = Parse(withName, connectionString);
        string display = location.DisplayName[..^Placeholder.Length];
        if (location.Kind == RemoteKind.Http)
        {
            throw new FormatException($"{display}: not an s3:// or Blob container prefix");
        }
        string key = location.Key!;
        return location with { Key = key.Length >= Placeholder.Length ? key[..^Placeholder.Length] : "", DisplayName = display };
    }

    /// <summary>scheme://host[:port]/path: user info and query (credentials, SAS signatures) removed.</summary>
    private static string Display(Uri uri) => uri.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped);

    /// <summary>For an address that did not even parse: everything from '?' and any user info dropped.</summary>
    internal static string Redact(string text)
    {
        int query = text.IndexOf('?');
        string head = query < 0 ? text : text[..query];
        int scheme = head.IndexOf("://", StringComparison.Ordinal);
        int at = head.IndexOf('@');
        return scheme >= 0 && at > scheme ? head[..(scheme + 3)] + head[(at + 1)..] : head;
    }

    private static bool MatchesBlobEndpoint(Uri uri, string? connectionString, string account)
    {
        string? endpoint = ConnectionStringValue(connectionString, "BlobEndpoint");
        return endpoint is not null && Uri.TryCreate(endpoint.TrimEnd('/'), UriKind.Absolute, out Uri? e)
            && string.Equals(e.Authority, uri.Authority, StringComparison.OrdinalIgnoreCase)
            && e.AbsolutePath.Trim('/') == account;
    }

    internal static string? ConnectionStringValue(string? connectionString, string name)
    {
        foreach (string part in (connectionString ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            int eq = part.IndexOf('=');
            if (eq > 0 && part[..eq].Trim().Equals(name, StringComparison.OrdinalIgnoreCase))
            {
                return part[(eq + 1)..].Trim();
            }
        }
        return null;
    }
}
