using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.Tests.Support;
using CloudMem.Tests.Symbols;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Windows;

/// <summary>
/// PDBs in the symbol-server layout (<c>&lt;pdb&gt;/&lt;GUID&gt;&lt;age hex&gt;/&lt;pdb&gt;</c>): found by GUID and age, loaded by
/// content; the opt-in symbol-server client against a local HTTP server (download, cache hit, 404, wrong GUID, not a
/// PDB); <c>symbols check</c> run as a process with a directory and with <c>--symbol-server</c>.
/// </summary>
public sealed class PdbSymbolStoreTests : IDisposable
{
    private readonly TempDir _dir = new();
    private static readonly PdbIdentity s_identity = PdbLoader.ReadIdentity(PdbLoaderTests.DataFile("types.pdb"));
    private static string Key => s_identity.Guid + "1";

    public void Dispose() => _dir.Dispose();

    /// <summary>A symbol directory holding the test PDB as <paramref name="pdbName"/>/&lt;GUID&gt;1/<paramref name="pdbName"/>.</summary>
    private string PdbDir(string name, string pdbName = "ntkrnlmp.pdb", string? key = null, string? fileName = null)
    {
        string root = _dir.File(name);
        string dir = Path.Combine(root, pdbName, key ?? Key);
        Directory.CreateDirectory(dir);
        File.Copy(PdbLoaderTests.DataFile("types.pdb"), Path.Combine(dir, fileName ?? pdbName));
        return root;
    }

    [Fact]
    public void Finds_and_loads_a_pdb_in_the_symbol_server_layout_by_guid_and_age()
    {
        string isfOnly = _dir.File("isf-only");
        string root = PdbDir("symbols");
        var store = new SymbolStore([isfOnly, root]);

        SymbolLookup lookup = store.FindWindows("ntkrnlmp.pdb", s_identity.Guid.ToLowerInvariant(), 1);

        string expected = Path.Combine(root, "ntkrnlmp.pdb", Key, "ntkrnlmp.pdb");
        Assert.Equal(expected, lookup.Path);
        Assert.Equal([
            Path.Combine(isfOnly, "windows", "ntkrnlmp.pdb", s_identity.Guid + "-1.json.xz"),
            Path.Combine(isfOnly, "windows", "ntkrnlmp.pdb", s_identity.Guid + "-1.json"),
            Path.Combine(isfOnly, "ntkrnlmp.pdb", Key, "ntkrnlmp.pdb"),
            Path.Combine(root, "windows", "ntkrnlmp.pdb", s_identity.Guid + "-1.json.xz"),
            Path.Combine(root, "windows", "ntkrnlmp.pdb", s_identity.Guid + "-1.json"),
            expected], lookup.Tried);
        TypeModel model = SymbolStore.Load(lookup.Path!);   // chosen by content: the file is named like any PDB
        Assert.StartsWith("PDB ntkrnlmp.pdb", model.Source);
        Assert.True(model.Symbols.ContainsKey("PsActiveProcessHead"));
        Assert.True(model.TryGetOffset("_EPROCESS_LIKE", "ActiveProcessLinks", out int links) && links == 24);

        Assert.False(store.FindWindows("ntkrnlmp.pdb", s_identity.Guid, 2).Found);   // another age
        Assert.False(store.FindWindows("../ntkrnlmp.pdb", s_identity.Guid, 1).Found);   // not a plain name: no PDB path tried
    }

    [Fact]
    public void Names_and_the_age_directory_match_ignoring_case_and_the_age_is_hex()
    {
        string root = PdbDir("upper", pdbName: "NTKRNLMP.PDB", key: s_identity.Guid.ToLowerInvariant() + "1a", fileName: "NtKrnlMp.pdb");
        SymbolLookup lookup = new SymbolStore([root]).FindWindows("ntkrnlmp.pdb", s_identity.Guid, 26);
        Assert.Equal(Path.Combine(root, "NTKRNLMP.PDB", s_identity.Guid.ToLowerInvariant() + "1a", "NtKrnlMp.pdb"), lookup.Path);
        Assert.Equal(s_identity.Guid + "1A", SymbolServerClient.Key(s_identity.Guid, 26));
    }

    [Fact]
    public void Load_reads_isf_and_pdb_by_content_and_names_the_file_when_neither()
    {
        string notPdb = _dir.Write("x.pdb", [.. "Microsoft C/C++ MSF 7.00\r\n\u001aDS\0\0\0"u8, .. new byte[20]]);
        Assert.Contains("PDB x.pdb: PDB superblock", Assert.Throws<PdbFormatException>(() => SymbolStore.Load(notPdb)).Message);
        string json = _dir.Write("y.pdb", "{}"u8.ToArray());
        Assert.IsType<IsfFormatException>(Assert.ThrowsAny<SymbolFormatException>(() => SymbolStore.Load(json)));
    }

    // ---- symbol server ----

    /// <summary>A local HTTP server on 127.0.0.1 serving fixed paths, counting requests.</summary>
    private sealed class LocalSymbolServer : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly Task _loop;

        public LocalSymbolServer()
        {
            using (var probe = new TcpListener(IPAddress.Loopback, 0))
            {
                probe.Start();
                Port = ((IPEndPoint)probe.LocalEndpoint).Port;
            }
            _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
            _listener.Start();
            _loop = Task.Run(Serve);
        }

        public int Port { get; }

        public Uri Url => new($"http://127.0.0.1:{Port}/symbols");

        public ConcurrentDictionary<string, byte[]> Files { get; } = new(StringComparer.Ordinal);

        public ConcurrentQueue<string> Requests { get; } = new();

        private async Task Serve()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await _listener.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
                {
                    return;
                }
                string path = context.Request.Url!.AbsolutePath;
                Requests.Enqueue(path);
                if (Files.TryGetValue(path, out byte[]? body))
                {
                    context.Response.StatusCode = 200;
                    context.Response.ContentLength64 = body.Length;
                    await context.Response.OutputStream.WriteAsync(body);
                }
                else
                {
                    context.Response.StatusCode = 404;
                }
                context.Response.Close();
            }
        }

        public void Dispose()
        {
            HttpListenerLoop.Shut(_listener);
            _loop.Wait(TimeSpan.FromSeconds(5));
        }
    }

    private static string ServerPath(string pdb, string key) => $"/symbols/{pdb}/{key}/{pdb}";

    [Fact]
    public void Downloads_into_the_cache_once_then_serves_the_cache()
    {
        using var server = new LocalSymbolServer();
        server.Files[ServerPath("ntkrnlmp.pdb", Key)] = PdbLoaderTests.RealPdb();
        string cache = _dir.File("cache");
        using var client = new SymbolServerClient(server.Url, cache, TimeSpan.FromSeconds(20));

        string path = client.Download("ntkrnlmp.pdb", s_identity.Guid, 1);
        string again = client.Download("ntkrnlmp.pdb", s_identity.Guid, 1);

        Assert.Equal(Path.Combine(cache, "ntkrnlmp.pdb", Key, "ntkrnlmp.pdb"), path);
        Assert.Equal(path, again);
        Assert.Equal([ServerPath("ntkrnlmp.pdb", Key)], server.Requests);
        Assert.Equal(PdbLoaderTests.RealPdb(), File.ReadAllBytes(path));
        Assert.Equal([path], Directory.GetFiles(cache, "*", SearchOption.AllDirectories));   // no temporary file left
        Assert.Equal(new Uri($"http://127.0.0.1:{server.Port}/symbols/ntkrnlmp.pdb/{Key}/ntkrnlmp.pdb"), client.UrlFor("ntkrnlmp.pdb", s_identity.Guid.ToLowerInvariant(), 1));

        // A store with the server downloads only what no directory holds, and finds the cache afterwards.
        var store = new SymbolStore([cache], client);
        SymbolLookup lookup = store.FindWindows("ntkrnlmp.pdb", s_identity.Guid, 1);
        Assert.Equal(path, lookup.Path);
        Assert.Single(server.Requests);
    }

    [Fact]
    public void A_missing_pdb_is_one_line_naming_the_url_and_the_http_status()
    {
        using var server = new LocalSymbolServer();
        using var client = new SymbolServerClient(server.Url, _dir.File("cache"), TimeSpan.FromSeconds(20));
        Uri url = client.UrlFor("ntkrnlmp.pdb", s_identity.Guid, 1);

        var e = Assert.Throws<SymbolServerException>(() => client.Download("ntkrnlmp.pdb", s_identity.Guid, 1));

        Assert.Equal($"{url}: HTTP 404 Not Found", e.Message);
        Assert.False(Directory.Exists(Path.Combine(_dir.File("cache"), "ntkrnlmp.pdb", Key))
            && Directory.EnumerateFiles(Path.Combine(_dir.File("cache"), "ntkrnlmp.pdb", Key)).Any());
        SymbolLookup lookup = new SymbolStore([_dir.File("empty")], client).FindWindows("ntkrnlmp.pdb", s_identity.Guid, 1);
        Assert.False(lookup.Found);
        Assert.Equal($"{url}: HTTP 404 Not Found", lookup.Tried[^1]);
    }

    [Fact]
    public void A_pdb_with_another_guid_or_age_or_not_a_pdb_is_refused_and_not_cached()
    {
        using var server = new LocalSymbolServer();
        string otherGuid = "00112233445566778899AABBCCDDEEFF";
        server.Files[ServerPath("ntkrnlmp.pdb", otherGuid + "1")] = PdbLoaderTests.RealPdb();   // a PDB, but not that one
        server.Files[ServerPath("ntkrnlmp.pdb", Key[..^1] + "2")] = PdbLoaderTests.RealPdb();  // right GUID, wrong age
        server.Files[ServerPath("hal.pdb", Key)] = [.. "<html>not found</html>"u8];
        string cache = _dir.File("cache");
        using var client = new SymbolServerClient(server.Url, cache, TimeSpan.FromSeconds(20));

        string wrongGuid = Assert.Throws<SymbolServerException>(() => client.Download("ntkrnlmp.pdb", otherGuid, 1)).Message;
        string wrongAge = Assert.Throws<SymbolServerException>(() => client.Download("ntkrnlmp.pdb", s_identity.Guid, 2)).Message;
        string notPdb = Assert.Throws<SymbolServerException>(() => client.Download("hal.pdb", s_identity.Guid, 1)).Message;

        Assert.Equal($"{client.UrlFor("ntkrnlmp.pdb", otherGuid, 1)}: refused: the file received is PDB {s_identity.Guid} age 1, not {otherGuid} age 1", wrongGuid);
        Assert.EndsWith($"refused: the file received is PDB {s_identity.Guid} age 1, not {s_identity.Guid} age 2", wrongAge);
        Assert.StartsWith($"{client.UrlFor("hal.pdb", s_identity.Guid, 1)}: refused: the file received is not a readable PDB (PDB superblock.magic at 0x0:", notPdb);
        Assert.Empty(Directory.GetFiles(cache, "*", SearchOption.AllDirectories));
        Assert.Throws<SymbolServerException>(() => client.Download("../evil.pdb", s_identity.Guid, 1));
        Assert.Equal(3, server.Requests.Count);
    }

    [Fact]
    public void Without_a_server_nothing_is_requested()
    {
        using var server = new LocalSymbolServer();
        server.Files[ServerPath("ntkrnlmp.pdb", Key)] = PdbLoaderTests.RealPdb();
        Assert.False(new SymbolStore([_dir.File("empty")]).FindWindows("ntkrnlmp.pdb", s_identity.Guid, 1).Found);
        Assert.Null(SymbolStore.WithUserCache([]).Server);
        Assert.Empty(server.Requests);
    }

    // ---- the CLI ----

    /// <summary>A raw capture holding a kernel PE header whose RSDS record names the test PDB (as ntkrnlmp.pdb).</summary>
    private string Capture()
    {
        byte[] guid = new byte[16];
        BinaryPrimitives.WriteUInt32LittleEndian(guid, uint.Parse(s_identity.Guid[..8], System.Globalization.NumberStyles.HexNumber));
        BinaryPrimitives.WriteUInt16LittleEndian(guid.AsSpan(4), ushort.Parse(s_identity.Guid[8..12], System.Globalization.NumberStyles.HexNumber));
        BinaryPrimitives.WriteUInt16LittleEndian(guid.AsSpan(6), ushort.Parse(s_identity.Guid[12..16], System.Globalization.NumberStyles.HexNumber));
        Convert.FromHexString(s_identity.Guid[16..]).CopyTo(guid, 8);
        var kernel = new PeImageBuilder { PdbPath = @"d:\os\ntkrnlmp.pdb", GuidBytes = guid, Age = 1 };
        return _dir.Write("win.raw", PeImageBuilder.RawCapture(4 << 20, (0x200000, kernel.Build())));
    }

    private (int Exit, string Out, string Err) Cli(params string[] args)
        => CliRunner.Run(new Dictionary<string, string> { ["XDG_CACHE_HOME"] = _dir.File("xdg") }, null, args);

    [Fact]
    public void Symbols_check_matches_a_pdb_from_a_directory_and_from_a_symbol_server()
    {
        string capture = Capture();
        string root = PdbDir("symbols");
        int types = PdbLoader.Load(PdbLoaderTests.DataFile("types.pdb")).TypeCount;

        (int exit, string stdout, string stderr) = Cli("symbols", "check", capture, "--symbols", root, "--output", "json");
        Assert.True(exit == 0, stderr);
        using (JsonDocument json = JsonDocument.Parse(stdout))
        {
            JsonElement kernel = json.RootElement.GetProperty("kernels")[0];
            Assert.Equal("matched", kernel.GetProperty("status").GetString());
            Assert.Equal(Path.Combine(root, "ntkrnlmp.pdb", Key, "ntkrnlmp.pdb"), kernel.GetProperty("path").GetString());
            Assert.Equal(types, kernel.GetProperty("types").GetInt32());
        }

        // Nothing local: the miss lists the PDB paths; with --symbol-server the PDB is downloaded into the user cache.
        string empty = _dir.File("empty");
        (exit, stdout, stderr) = Cli("symbols", "check", capture, "--symbols", empty);
        Assert.Equal(2, exit);
        Assert.Contains(Path.Combine(empty, "ntkrnlmp.pdb", Key, "ntkrnlmp.pdb"), stderr);
        Assert.Contains(Path.Combine(_dir.File("xdg"), "cloudmem", "symbols", "ntkrnlmp.pdb", Key, "ntkrnlmp.pdb"), stderr);

        using var server = new LocalSymbolServer();
        (exit, _, stderr) = Cli("symbols", "check", capture, "--symbols", empty, "--symbol-server", server.Url.ToString());
        Assert.Equal(2, exit);
        Assert.Contains($"{server.Url}/ntkrnlmp.pdb/{Key}/ntkrnlmp.pdb: HTTP 404 Not Found", stderr);

        server.Files[ServerPath("ntkrnlmp.pdb", Key)] = PdbLoaderTests.RealPdb();
        (exit, stdout, stderr) = Cli("symbols", "check", capture, "--symbols", empty, "--symbol-server", server.Url.ToString());
        Assert.True(exit == 0, stderr);
        string cached = Path.Combine(_dir.File("xdg"), "cloudmem", "symbols", "ntkrnlmp.pdb", Key, "ntkrnlmp.pdb");
        Assert.Contains($"matched: {cached} ({types} types", stdout);
        Assert.True(File.Exists(cached));
        Assert.Equal(2, server.Requests.Count);

        (exit, _, stderr) = Cli("symbols", "check", capture, "--symbol-server", "ftp://example.invalid/");
        Assert.Equal(2, exit);
        Assert.Contains("--symbol-server must be an http or https URL", stderr);
    }
}
