using System.Diagnostics;
using System.Text;
using CloudMem.Engine.Paging;
using CloudMem.Engine.Symbols;
using CloudMem.Engine.Windows;
using CloudMem.ImageBuilder;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;
using Xunit.Abstractions;

namespace CloudMem.Tests.Windows;

/// <summary>
/// windows.lsadump and windows.cachedump on the "registry" scenario's SECURITY hive (written by hivexregedit, secrets
/// and cached logons encrypted by the builder with the documented algorithms), laid out as the kernel holds it: against
/// the planted values, against impacket's secretsdump on the same SYSTEM and SECURITY files, in the pre-Vista era, and
/// with half the hive's bins paged out.
/// </summary>
public sealed class WindowsLsaTests(WindowsRegistryImages images, ITestOutputHelper output) : IClassFixture<WindowsRegistryImages>
{
    private static string Hex(byte[] data) => Convert.ToHexString(data).ToLowerInvariant();

    private static WindowsKernel Open(WindowsRegistryImages.Built built, out RunMappedMemory memory) => WindowsRegistryImages.Open(built, out memory);

    private void Print<T>(Engine.Plugins.RowsReport<T> report) where T : notnull => WindowsRegistryImages.Print(output, report);

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10, false)]
    [InlineData(WindowsSymbols.Win7, false)]
    [InlineData(WindowsSymbols.Win11, false)]
    [InlineData(WindowsSymbols.Win7, true)]
    public void Lsadump_decrypts_every_planted_secret(string guid, bool preVista)
    {
        WindowsRegistryImages.Built built = images.Get(guid, preVistaLsa: preVista);
        WindowsKernel kernel = Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsLsaDump.LsaDump(kernel, reveal: true);
            Print(report);
            Assert.Equal([preVista ? @"LSA key from Policy\PolSecretEncryptionKey (pre-Vista RC4; secrets DES)" : @"LSA key from Policy\PolEKList (Vista+ AES-256)"], report.Notes);
            Assert.Equal(SecurityHive.Secrets.Select(s => s.Name).Order(StringComparer.OrdinalIgnoreCase), report.Rows.Select(r => r.Name!).Order(StringComparer.OrdinalIgnoreCase));
            foreach (LsaSecretTruth secret in SecurityHive.Secrets)
            {
                LsaSecretRow row = Assert.Single(report.Rows, r => r.Name == secret.Name);
                Assert.Null(row.Doubt);
                Assert.Equal(Hex(secret.Current), row.CurrentHex);
                Assert.Equal(secret.Old is null ? null : Hex(secret.Old), row.OldHex);
                Assert.Equal(secret.Current.Length, row.CurrentLength);
                Assert.Equal(new DateTimeOffset(secret.CurrentSet), row.CurrentSet);
                Assert.Equal(secret.Old is null ? null : new DateTimeOffset(secret.CurrentSet.AddDays(-30)), row.OldSet);
            }
            Assert.Equal((LsaSecretKind.DefaultPassword, "Winter2024!", "Autumn2023!"), Assert.Single(report.Rows, r => r.Name == "DefaultPassword").Let(r => (r.Kind, r.Current, r.Old)));
            Assert.Equal((LsaSecretKind.ServicePassword, "Svc#Backdoor7"), Assert.Single(report.Rows, r => r.Name == "_SC_EvilSvc").Let(r => (r.Kind, r.Current)));
            byte[] dpapi = SecurityHive.Secrets[0].Current;
            Assert.Equal($"machinekey:{Hex(dpapi[4..24])} userkey:{Hex(dpapi[24..44])}", Assert.Single(report.Rows, r => r.Kind == LsaSecretKind.DpapiSystem).Current);
            Assert.Equal($"nthash:{Hex(Md4.Hash(SecurityHive.Secrets[1].Current))}", Assert.Single(report.Rows, r => r.Kind == LsaSecretKind.MachineAccount).Current);
            Assert.Equal(LsaSecretKind.CachedLogonKey, Assert.Single(report.Rows, r => r.Name == "NL$KM").Kind);

            // Without --reveal: a two-character preview and the length, no hex.
            var redacted = WindowsLsaDump.LsaDump(kernel);
            LsaSecretRow password = Assert.Single(redacted.Rows, r => r.Name == "DefaultPassword");
            Assert.Equal(("Wi… (11 chars)", "Au… (11 chars)", (string?)null, (string?)null), (password.Current, password.Old, password.CurrentHex, password.OldHex));
            Assert.All(redacted.Rows, r => Assert.DoesNotContain("Winter2024", r.ToString(), StringComparison.Ordinal));
            Assert.Equal("nthash:" + Hex(Md4.Hash(SecurityHive.Secrets[1].Current))[..2] + "… (32 chars)", Assert.Single(redacted.Rows, r => r.Kind == LsaSecretKind.MachineAccount).Current);
        }
    }

    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10, false)]
    [InlineData(WindowsSymbols.Win7, false)]
    [InlineData(WindowsSymbols.Win11, false)]
    [InlineData(WindowsSymbols.Win7, true)]
    public void Cachedump_gives_the_verifiers_of_the_planted_logons(string guid, bool preVista)
    {
        WindowsRegistryImages.Built built = images.Get(guid, preVistaLsa: preVista);
        WindowsKernel kernel = Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var report = WindowsCacheDump.CacheDump(kernel);
            Print(report);
            Assert.Equal([$"{SecurityHive.Slots - SecurityHive.Logons.Count} empty cache slot(s)"], report.Notes);
            Assert.Equal(SecurityHive.Logons.Select(l => (l.Entry, (string?)l.User, (string?)l.Domain, (string?)l.DnsDomain, (uint?)l.Rid, (DateTimeOffset?)new DateTimeOffset(l.LastWrite),
                    preVista ? Hex(l.Dcc1) : Hex(l.Dcc2(10240)), preVista ? $"{Hex(l.Dcc1)}:{l.User}" : $"$DCC2$10240#{l.User}#{Hex(l.Dcc2(10240))}")),
                report.Rows.Select(r => (r.Entry, r.User, r.Domain, r.DnsDomain, r.Rid, r.LastWrite, r.Hash!, r.Hashcat!)));
            Assert.All(report.Rows, r => Assert.Equal((preVista ? CachedHashKind.Dcc1 : CachedHashKind.Dcc2, preVista ? null : (int?)10240), (r.Kind!.Value, r.Iterations)));
        }
    }

    [Fact]
    public void Only_lsadump_takes_reveal()
    {
        var reveal = new Engine.Core.PluginArguments { RevealSecrets = true };
        Assert.Null(Engine.Core.PluginRegistry.Validate(Engine.Core.PluginRegistry.Get("windows.lsadump").Info, reveal));
        Assert.StartsWith("windows.cachedump does not take --reveal", Engine.Core.PluginRegistry.Validate(Engine.Core.PluginRegistry.Get("windows.cachedump").Info, reveal), StringComparison.Ordinal);
    }

    /// <summary>The builder's DCC2 against hashcat's published example for mode 2100 (user tom, password hashcat).</summary>
    [Fact]
    public void The_builders_dcc2_equals_hashcats_published_example()
        => Assert.Equal("e4e938d12fe5974dc42a90120bd9c90f", Hex(CachedLogonTruth.Dcc2Of("hashcat", "tom", 10240)));

    /// <summary>impacket's secretsdump (LOCAL: SYSTEM and SECURITY hive files) on the very hive bytes laid out.</summary>
    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10, false)]
    [InlineData(WindowsSymbols.Win7, false)]
    [InlineData(WindowsSymbols.Win11, false)]
    [InlineData(WindowsSymbols.Win7, true)]
    public void Lsadump_and_cachedump_equal_impacket_secretsdump_on_the_same_hives(string guid, bool preVista)
    {
        WindowsRegistryImages.Built built = images.Get(guid, preVistaLsa: preVista);
        string[] lines = WindowsRegistryImages.Impacket(built, "security", 4, output);
        Assert.Equal("bootkey:" + Hex(RegistryScenario.BootKey), lines[0]);
        string[] secrets = [.. lines.Where(l => l.StartsWith("secret:", StringComparison.Ordinal)).Select(l => l["secret:".Length..]).Order(StringComparer.Ordinal)];
        string[] cached = [.. lines.Where(l => l.StartsWith("cached:", StringComparison.Ordinal)).Select(l => l["cached:".Length..])];
        WindowsKernel kernel = Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var lsa = WindowsLsaDump.LsaDump(kernel, reveal: true);
            string[] ours = [.. lsa.Rows.SelectMany(r => new[] { $"{r.Name}:{r.CurrentHex}", r.OldHex is null ? null : $"{r.Name}_history:{r.OldHex}" })
                .OfType<string>().Order(StringComparer.Ordinal)];
            Assert.Equal(secrets, ours);
            Assert.Equal(SecurityHive.Secrets.Count + SecurityHive.Secrets.Count(s => s.Old is not null), secrets.Length);

            var cache = WindowsCacheDump.CacheDump(kernel);
            Assert.Equal(cached, cache.Rows.Select(r => preVista ? $"{r.DnsDomain}/{r.User}:{r.Hash}:{r.User}" : $"{r.DnsDomain}/{r.User}:{r.Hashcat}"));
            Assert.Equal(SecurityHive.Logons.Count, cached.Length);
        }
    }

    /// <summary>
    /// The SECURITY hive's bin holding the cached logon NL$2 paged out (as hivex lays the hive out, that bin also holds
    /// the value cells of the empty slots NL$3 and NL$4): every secret still decrypts to its planted value, NL$1 is read,
    /// NL$2 is a row naming the cell that is not in memory, and the unreadable value cells are notes; nothing is guessed.
    /// </summary>
    [SkippableTheory]
    [InlineData(WindowsSymbols.Win10)]
    [InlineData(WindowsSymbols.Win7)]
    public void A_paged_out_security_bin_names_the_cached_logon_that_could_not_be_read(string guid)
    {
        WindowsRegistryImages.Built built = images.Get(guid, pageOutSecurityTail: true);
        LaidOutBin paged = Assert.Single(built.Manifest.Hives![4].Bins, b => b.PagedOut);
        string cellInPaged = $@"cell 0x[0-9A-F]+ at 0x{paged.Address >> 12:X}[0-9A-F]{{3}}: page not in memory \(SwappedOut\)";
        WindowsKernel kernel = Open(built, out RunMappedMemory memory);
        using (memory)
        {
            var lsa = WindowsLsaDump.LsaDump(kernel, reveal: true);
            Print(lsa);
            Assert.Equal(SecurityHive.Secrets.Select(s => (s.Name, Hex(s.Current), s.Old is null ? null : Hex(s.Old), (string?)null)).OrderBy(s => s.Name, StringComparer.Ordinal),
                lsa.Rows.Select(r => (r.Name!, r.CurrentHex!, r.OldHex, r.Doubt)).OrderBy(s => s.Item1, StringComparer.Ordinal));

            var cache = WindowsCacheDump.CacheDump(kernel);
            Print(cache);
            CachedLogonTruth first = SecurityHive.Logons[0];
            Assert.Equal(Hex(first.Dcc2(10240)), Assert.Single(cache.Rows, r => r.Entry == "NL$1").Hash);
            CachedLogonRow second = Assert.Single(cache.Rows, r => r.Entry == "NL$2");
            Assert.Equal((null, null), (second.User, second.Hash));
            Assert.Matches("^the entry did not read: " + cellInPaged + "$", second.Doubt);
            Assert.Contains(cache.Notes, n => System.Text.RegularExpressions.Regex.IsMatch(n, @"a value under Cache did not read: " + cellInPaged));
        }
    }
}
