using System.Net;
using CloudMem.VmStateParsers;

namespace CloudMem.Engine.Symbols;

/// <summary>A symbol server download that failed; the message is one line naming the URL and the reason (HTTP
/// status, timeout, a file that is not the PDB asked for).</summary>
public sealed class SymbolServerException(string message) : Exception(message);

/// <summary>
/// Downloads PDBs from a symbol server using Microsoft's URL scheme
/// <c>&lt;server&gt;/&lt;pdb name&gt;/&lt;GUID&gt;&lt;age in hex&gt;/&lt;pdb name&gt;</c> (GUID as 32 upper-case hex digits) into a
/// cache directory laid out the same way, which <see cref="SymbolStore"/> searches.
/// </summary>
/// <remarks>
/// <para>Opt-in only: nothing creates a client unless the user names a server (<c>--symbol-server URL</c>).</para>
/// <para>A download goes to a temporary file next to its final place, is checked to be a PDB whose GUID and age are
/// the ones asked for, and only then moved into place; a wrong or unreadable file is deleted and never cached. A file
/// already in the cache is returned without asking the server.</para>
/// <para>Only the plain PDB URL is requested: the compressed form (the name ending in '_', a CAB archive) would need
/// a CAB/LZX decoder, which this client does not have.</para>
/// <para>Thread-safe (HttpClient is); concurrent downloads of one PDB each use their own temporary file.</para>
/// </remarks>
public sealed class SymbolServerClient : IDisposable
{
    /// <summary>The timeout for one download when none is given.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(2);

    private readonly HttpClient _http;
    private readonly ParserLimits _limits;

    /// <summary>A client for <paramref name="server"/> that caches into <paramref name="cacheDirectory"/>.</summary>
    /// <param name="server">The server's base URL (http or https), e.g. https://msdl.microsoft.com/download/symbols.</param>
    /// <param name="cacheDirectory">Where PDBs are stored (created when needed).</param>
    /// <param name="timeout">Time allowed for one request including the body; <see cref="DefaultTimeout"/> when null.</param>
    /// <param name="handler">The HTTP handler (tests); a new <see cref="SocketsHttpHandler"/> when null.</param>
    /// <param name="limits">Caps the download size (<see cref="ParserLimits.MaxPdbBytes"/>).</param>
    public SymbolServerClient(Uri server, string cacheDirectory, TimeSpan? timeout = null, HttpMessageHandler? handler = null, ParserLimits? limits = null)
    {
        ArgumentNullException.ThrowIfNull(server);
        ArgumentException.ThrowIfNullOrEmpty(cacheDirectory);
        if (!server.IsAbsoluteUri || (server.Scheme != Uri.UriSchemeHttp && server.Scheme != Uri.UriSchemeHttps))
        {
            throw new ArgumentException($"symbol server '{server}' is not an http or https URL", nameof(server));
        }
        Server = server;
        CacheDirectory = Path.GetFullPath(cacheDirectory);
        _limits = limits ?? ParserLimits.Default;
        _http = new HttpClient(handler ?? new SocketsHttpHandler(), disposeHandler: true) { Timeout = timeout ?? DefaultTimeout };
        _http.DefaultRequestHeaders.UserAgent.ParseAdd("cloudmem-symbols/1.0");
    }

    /// <summary>The server's base URL.</summary>
    public Uri Server { get; }

    /// <summary>Where downloaded PDBs are kept.</summary>
    public string CacheDirectory { get; }

    /// <summary>The directory name of one PDB version: the GUID in upper case without dashes, then the age in hex.</summary>
    public static string Key(string guid, uint age) => $"{guid.Replace("-", "", StringComparison.Ordinal).ToUpperInvariant()}{age:X}";

    /// <summary>True for a name usable as one path component (no separators, not "." or "..", no control characters).</summary>
    public static bool IsPlainFileName(string name)
        => name.Length is > 0 and <= 255 && name != "." && name != ".." && name.IndexOfAny(['/', '\\', ':', '\0']) < 0
           && !name.Any(char.IsControl);

    /// <summary>The URL of a PDB on this server.</summary>
    public Uri UrlFor(string pdbName, string guid, uint age)
    {
        string name = Uri.EscapeDataString(pdbName);
        return new Uri($"{Server.AbsoluteUri.TrimEnd('/')}/{name}/{Key(guid, age)}/{name}");
    }

    /// <summary>Where the PDB is (or will be) in the cache.</summary>
    public string CachePath(string pdbName, string guid, uint age) => Path.Combine(CacheDirectory, pdbName, Key(guid, age), pdbName);

    /// <summary>The cached PDB, downloading it first when absent.</summary>
    /// <returns>The path of the PDB in the cache.</returns>
    /// <exception cref="SymbolServerException">The server did not deliver the PDB asked for (one line: URL and reason).</exception>
    public string Download(string pdbName, string guid, uint age, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(pdbName);
        ArgumentException.ThrowIfNullOrEmpty(guid);
        if (!IsPlainFileName(pdbName))
        {
            throw new SymbolServerException($"symbol server: '{pdbName}' is not a plain PDB file name");
        }
        if (Key(guid, 0).Length != 33 || !Key(guid, 0)[..32].All(char.IsAsciiHexDigit))
        {
            throw new SymbolServerException($"symbol server: '{guid}' is not a GUID of 32 hex digits");
        }
        string target = CachePath(pdbName, guid, age);
        if (File.Exists(target))
        {
            return target;
        }
        Uri url = UrlFor(pdbName, guid, age);
        string directory = Path.GetDirectoryName(target)!;
        string temporary = Path.Combine(directory, $".{pdbName}.{Guid.NewGuid():N}.download");
        try
        {
            Directory.CreateDirectory(directory);
            Fetch(url, temporary, cancellationToken);
            PdbIdentity identity;
            try
            {
                identity = PdbLoader.ReadIdentity(temporary, _limits);
            }
            catch (PdbFormatException e)
            {
                throw new SymbolServerException($"{url}: refused: the file received is not a readable PDB ({e.Error})");
            }
            if (!identity.Matches(guid, age))
            {
                throw new SymbolServerException(
                    $"{url}: refused: the file received is PDB {identity.Guid} age {identity.DbiAge ?? identity.Age}, not {Key(guid, 0)[..32]} age {age}");
            }
            try
            {
                File.Move(temporary, target, overwrite: false);
            }
            catch (IOException) when (File.Exists(target))
            {
                // another download of the same PDB finished first: keep that one
            }
            return target;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new SymbolServerException($"{url}: cannot store the download under {directory}: {e.Message}");
        }
        finally
        {
            TryDelete(temporary);
        }
    }

    private void Fetch(Uri url, string temporary, CancellationToken cancellationToken)
    {
        try
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, url);
            using HttpResponseMessage response = _http.Send(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
            if (!response.IsSuccessStatusCode)
            {
                throw new SymbolServerException($"{url}: HTTP {(int)response.StatusCode} {response.ReasonPhrase ?? response.StatusCode.ToString()}");
            }
            if (response.Content.Headers.ContentLength is long declared && declared > _limits.MaxPdbBytes)
            {
                throw new SymbolServerException($"{url}: refused: {declared} bytes, more than the limit of {_limits.MaxPdbBytes}");
            }
            using Stream body = response.Content.ReadAsStream(cancellationToken);
            using var file = new FileStream(temporary, FileMode.CreateNew, FileAccess.Write, FileShare.None);
            byte[] buffer = new byte[1 << 16];
            long total = 0;
            int read;
            while ((read = body.Read(buffer, 0, buffer.Length)) > 0)
            {
                total += read;
                if (total > _limits.MaxPdbBytes)
                {
                    throw new SymbolServerException($"{url}: refused: more than the limit of {_limits.MaxPdbBytes} bytes");
                }
                file.Write(buffer, 0, read);
            }
        }
        catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new SymbolServerException($"{url}: no complete answer within {_http.Timeout.TotalSeconds:0.#} s");
        }
        catch (HttpRequestException e)
        {
            string status = e.StatusCode is HttpStatusCode code ? $"HTTP {(int)code} " : "";
            throw new SymbolServerException($"{url}: {status}{e.Message.ReplaceLineEndings(" ")}");
        }
    }

    private static void TryDelete(string path)
    {
        try
        {
            File.Delete(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // best effort: a leftover temporary file is ignored by lookups (its name starts with '.')
        }
    }

    /// <inheritdoc/>
    public void Dispose() => _http.Dispose();
}
