using System.Security.Cryptography;
using System.Text.Json.Nodes;
using Azure.Core.Pipeline;
using CloudMem.Connectors.Azure;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Azure;

/// <summary>
/// Manifests signed with an Azure Key Vault key through the documented REST API. No Key Vault emulator exists:
/// <see cref="FakeKeyVault"/> implements the two calls' request/response shape (a transport test); the keys, the
/// signatures and their verification are real RSA/ECDSA in .NET, and the verifier is the one `custody verify` runs.
/// </summary>
public sealed class KeyVaultSignerTests
{
    private static KeyVaultManifestSigner Signer(FakeKeyVault vault, Uri key, string? alg = null)
        => KeyVaultManifestSigner.Create(new FakeTokenCredential(), new KeyVaultKeySettings(key, alg, new HttpClientTransport(new HttpClient(vault.CreateHandler()))));

    public static TheoryData<string, string> Keys => new()
    {
        { "ec", "ES256" },
        { "rsa", "RS256" },
        { "rsa", "PS256" },
    };

    private static AsymmetricAlgorithm NewKey(string kind) => kind == "ec" ? ECDsa.Create(ECCurve.NamedCurves.nistP256) : RSA.Create(3072);

    [Theory]
    [MemberData(nameof(Keys))]
    public async Task Signed_in_the_vault_verified_with_the_fetched_key_and_tampering_rejected(string kind, string alg)
    {
        await using var vault = new FakeKeyVault();
        using AsymmetricAlgorithm ours = NewKey(kind), theirs = NewKey(kind);
        Uri ourKey = vault.AddKey("custody", ours);
        Uri theirKey = vault.AddKey("stranger", theirs);
        using var dir = new TempDir();
        KeyVaultManifestSigner signer = Signer(vault, ourKey, alg);
        Assert.Equal($"azure-keyvault:{vault.Kid("custody")}", signer.Signer);
        string manifest = ManifestSigningTests.SignedManifest(dir, signer);

        // What went over the wire: GET key (api-version 7.4, bearer), then POST {kid}/sign on the pinned version.
        string[] calls = vault.Calls.Select(c => c.Request).ToArray();
        Assert.Equal($"GET /keys/custody?api-version=7.4", calls[0]);
        Assert.Equal($"POST {vault.Kid("custody").AbsolutePath}/sign?api-version=7.4", Assert.Single(calls, c => c.StartsWith("POST", StringComparison.Ordinal)));
        Assert.All(vault.Calls, c => Assert.StartsWith("Bearer ", c.Authorization));

        JsonNode sig = JsonNode.Parse(File.ReadAllText(manifest + ".sig"))!;
        Assert.Equal(ManifestSignatureAlgorithms.FromJws(alg), sig["signatureAlgorithm"]!.GetValue<string>());
        // The key fetched from the vault again (what `custody verify --keyvault-key` does) pins the verification.
        byte[] fetched = Signer(vault, vault.Kid("custody"), alg).PublicKey;
        Assert.Equal(kind == "ec" ? ((ECDsa)ours).ExportSubjectPublicKeyInfo() : ((RSA)ours).ExportSubjectPublicKeyInfo(), fetched);
        ManifestVerification ok = ManifestSigning.Verify(manifest, null, fetched, ourKey.ToString());
        Assert.True(ok.Valid, ok.Reason);
        Assert.True(ok.KeyPinned);

        // One byte changed anywhere: rejected.
        byte[] original = File.ReadAllBytes(manifest);
        byte[] changed = (byte[])original.Clone();
        changed[original.Length / 2] ^= 0x20;
        File.WriteAllBytes(manifest, changed);
        ManifestVerification tampered = ManifestSigning.Verify(manifest, null, fetched, ourKey.ToString());
        Assert.False(tampered.Valid);
        Assert.Contains("changed since it was signed", tampered.Reason);
        File.WriteAllBytes(manifest, original);

        // Signed by another vault key: rejected against ours, although it verifies against its own (embedded) key.
        using var other = new TempDir();
        string foreign = ManifestSigningTests.SignedManifest(other, Signer(vault, theirKey, alg));
        Assert.True(ManifestSigning.Verify(foreign).Valid);
        ManifestVerification wrongKey = ManifestSigning.Verify(foreign, null, fetched, ourKey.ToString());
        Assert.False(wrongKey.Valid);
        Assert.Contains("not by the given key", wrongKey.Reason);

        // Their signature over our manifest with our key id and public key left in place: the math says no.
        JsonNode forged = JsonNode.Parse(File.ReadAllText(manifest + ".sig"))!;
        forged["signature"] = JsonNode.Parse(File.ReadAllText(foreign + ".sig"))!["signature"]!.GetValue<string>();
        File.WriteAllText(manifest + ".sig", forged.ToJsonString());
        ManifestVerification bad = ManifestSigning.Verify(manifest, null, fetched, ourKey.ToString());
        Assert.False(bad.Valid);
        Assert.Contains("does not verify", bad.Reason);
    }

    [Fact]
    public async Task Cli_verify_with_the_vault_public_key_as_pem()
    {
        await using var vault = new FakeKeyVault();
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        using var stranger = RSA.Create(2048);
        using var dir = new TempDir();
        string manifest = ManifestSigningTests.SignedManifest(dir, Signer(vault, vault.AddKey("custody", key)));
        File.WriteAllText(dir.File("vault.pub"), key.ExportSubjectPublicKeyInfoPem());
        File.WriteAllText(dir.File("stranger.pub"), stranger.ExportSubjectPublicKeyInfoPem());

        (int exit, string stdout, string stderr) = CliRunner.Run(null, null, "custody", "verify", manifest, "--key", dir.File("vault.pub"));
        Assert.True(exit == 0, stderr);
        Assert.Contains("signature valid (ECDSA-P256-SHA256)", stdout);
        Assert.Contains("azure-keyvault:", stdout);
        (exit, _, stderr) = CliRunner.Run(null, null, "custody", "verify", manifest, "--key", dir.File("stranger.pub"));
        Assert.NotEqual(0, exit);
        Assert.Contains("not by the given key", stderr);
        byte[] bytes = File.ReadAllBytes(manifest);
        bytes[10] ^= 0x01;
        File.WriteAllBytes(manifest, bytes);
        (exit, _, stderr) = CliRunner.Run(null, null, "custody", "verify", manifest, "--key", dir.File("vault.pub"));
        Assert.NotEqual(0, exit);
        Assert.Contains("changed since it was signed", stderr);
    }

    [Fact]
    public async Task Unusable_keys_and_vault_errors_are_one_line_refusals()
    {
        await using var vault = new FakeKeyVault();
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        using var rsa = RSA.Create(2048);
        using var disabled = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        Uri p384Key = vault.AddKey("p384", p384);
        Uri rsaKey = vault.AddKey("rsa", rsa);
        Uri disabledKey = vault.AddKey("off", disabled, enabled: false);

        Assert.Contains("is EC", Assert.Throws<CaptureException>(() => Signer(vault, p384Key)).Message);
        Assert.Contains("RS256 or PS256, not ES256", Assert.Throws<CaptureException>(() => Signer(vault, rsaKey, "ES256")).Message);
        Assert.Contains("is disabled", Assert.Throws<CaptureException>(() => Signer(vault, disabledKey)).Message);
        CaptureException missing = Assert.Throws<CaptureException>(() => Signer(vault, new Uri(vault.Endpoint, "keys/nothing")));
        Assert.Contains("HTTP 404", missing.Message);
        Assert.Contains("was not found", missing.Message);
        Assert.DoesNotContain('\n', missing.Message);
        Assert.Contains("expected https://VAULT", Assert.Throws<CaptureException>(() => Signer(vault, new Uri(vault.Endpoint, "secrets/x"))).Message);
    }

    [Fact]
    public void Es256_jws_signatures_become_der()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        byte[] digest = SHA256.HashData("manifest"u8);
        for (int i = 0; i < 32; i++)
        {
            byte[] raw = key.SignHash(digest, DSASignatureFormat.IeeeP1363FixedFieldConcatenation);
            byte[] der = KeyVaultManifestSigner.P1363ToDer(raw);
            Assert.True(key.VerifyHash(digest, der, DSASignatureFormat.Rfc3279DerSequence));
        }
    }
}
