using System.Security.Cryptography;
using System.Text.Json.Nodes;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors;

/// <summary>Signed custody manifests: ECDSA P-256 over the manifest's bytes, verified with a pinned public key.</summary>
public sealed class ManifestSigningTests
{
    private static (string Private, string Public) Keys(TempDir dir, string name)
    {
        string keyId = LocalKeySigner.Generate(dir.File(name + ".key"), dir.File(name + ".pub"));
        Assert.StartsWith("sha256:", keyId, StringComparison.Ordinal);
        return (dir.File(name + ".key"), dir.File(name + ".pub"));
    }

    /// <summary>A manifest written by the recorder, signed on write.</summary>
    internal static string SignedManifest(TempDir dir, IManifestSigner signer)
    {
        var request = new CaptureRequest { CaseId = "IR-7", OutputDirectory = dir.Path, Signer = signer };
        var recorder = new CustodyRecorder("vsphere", "vm-42", "snapshot", request, new CaptureLog(new SecretScrubber(), TextWriter.Null));
        recorder.Step("snapshot", "vm-42 snapshot-7 with memory");
        recorder.Evidence("vm-42.vmem", "vsphere://vc/ds/vm-42.vmem", null, 4096, 4096, new string('a', 64), new string('a', 64), "raw", null,
            new StoredObjectRecord("v1", "\"etag\"", new Dictionary<string, string> { ["content-md5"] = "AAAA" }));
        recorder.Complete();
        return recorder.Write();
    }

    [Fact]
    public void A_signed_manifest_verifies_with_its_key()
    {
        using var dir = new TempDir();
        (string priv, string pub) = Keys(dir, "custody");
        using LocalKeySigner signer = LocalKeySigner.Load(priv);
        string manifest = SignedManifest(dir, signer);

        Assert.True(File.Exists(manifest + ".sig"));
        ManifestVerification result = ManifestSigning.Verify(manifest, trustedPublicKeyPath: pub);
        Assert.True(result.Valid, result.Reason);
        Assert.True(result.KeyPinned);
        Assert.Equal(ManifestKeys.KeyId(signer.PublicKey), result.KeyId);
        // The stored-object facts are part of what is signed.
        EvidenceRecord evidence = Assert.Single(CustodyManifest.Read(manifest).Evidence);
        Assert.Equal(new StoredObjectRecord("v1", "\"etag\"", null) with { Checksums = evidence.Stored!.Checksums }, evidence.Stored);
        Assert.Equal("AAAA", evidence.Stored!.Checksums!["content-md5"]);
        // Without --key the embedded key is used, and the result says it is not pinned.
        ManifestVerification unpinned = ManifestSigning.Verify(manifest);
        Assert.True(unpinned.Valid);
        Assert.False(unpinned.KeyPinned);
        Assert.Contains("NOT pinned", unpinned.Reason);
    }

    [Fact]
    public void One_changed_byte_anywhere_is_rejected()
    {
        using var dir = new TempDir();
        (string priv, string pub) = Keys(dir, "custody");
        using LocalKeySigner signer = LocalKeySigner.Load(priv);
        string manifest = SignedManifest(dir, signer);
        byte[] original = File.ReadAllBytes(manifest);
        foreach (int offset in new[] { 0, original.Length / 3, original.Length / 2, original.Length - 1 })
        {
            byte[] changed = (byte[])original.Clone();
            changed[offset] ^= 0x01;
            File.WriteAllBytes(manifest, changed);
            ManifestVerification result = ManifestSigning.Verify(manifest, trustedPublicKeyPath: pub);
            Assert.False(result.Valid);
            Assert.Contains("changed since it was signed", result.Reason);
        }
        File.WriteAllBytes(manifest, original);
        Assert.True(ManifestSigning.Verify(manifest, trustedPublicKeyPath: pub).Valid);
    }

    [Fact]
    public void A_manifest_signed_by_another_key_is_rejected()
    {
        using var dir = new TempDir();
        (_, string pub) = Keys(dir, "ours");
        (string otherPriv, _) = Keys(dir, "theirs");
        using LocalKeySigner other = LocalKeySigner.Load(otherPriv);
        string manifest = SignedManifest(dir, other);

        ManifestVerification result = ManifestSigning.Verify(manifest, trustedPublicKeyPath: pub);
        Assert.False(result.Valid);
        Assert.Contains($"signed by key {ManifestKeys.KeyId(other.PublicKey)}, not by the given key", result.Reason);
    }

    [Fact]
    public void A_forged_signature_or_a_swapped_key_is_rejected()
    {
        using var dir = new TempDir();
        (string priv, string pub) = Keys(dir, "custody");
        using LocalKeySigner signer = LocalKeySigner.Load(priv);
        string manifest = SignedManifest(dir, signer);
        string sigPath = manifest + ".sig";
        string original = File.ReadAllText(sigPath);

        // Another valid-looking signature (over other bytes) in the file.
        JsonNode sig = JsonNode.Parse(original)!;
        sig["signature"] = Convert.ToBase64String(signer.SignDigest(SHA256.HashData("something else"u8.ToArray())));
        File.WriteAllText(sigPath, sig.ToJsonString());
        ManifestVerification forged = ManifestSigning.Verify(manifest, trustedPublicKeyPath: pub);
        Assert.False(forged.Valid);
        Assert.Contains("does not verify", forged.Reason);

        // The embedded public key swapped for another key's, keyId left alone.
        using var stranger = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        sig = JsonNode.Parse(original)!;
        sig["publicKey"] = Convert.ToBase64String(stranger.ExportSubjectPublicKeyInfo());
        File.WriteAllText(sigPath, sig.ToJsonString());
        Assert.Contains("does not match its publicKey", ManifestSigning.Verify(manifest).Reason);

        // Missing or malformed signature files are one-line errors naming the file.
        File.WriteAllText(sigPath, "not json");
        Assert.Contains(sigPath, Assert.Throws<CaptureException>(() => ManifestSigning.Verify(manifest)).Message);
        File.Delete(sigPath);
        Assert.Contains("no such signature file", Assert.Throws<CaptureException>(() => ManifestSigning.Verify(manifest)).Message);
    }

    [Fact]
    public void Keys_must_be_p256_private_keys()
    {
        using var dir = new TempDir();
        (_, string pub) = Keys(dir, "custody");
        Assert.Contains("holds no private key", Assert.Throws<CaptureException>(() => LocalKeySigner.Load(pub)).Message);
        using var p384 = ECDsa.Create(ECCurve.NamedCurves.nistP384);
        File.WriteAllText(dir.File("p384.key"), p384.ExportPkcs8PrivateKeyPem());
        Assert.Contains("not P-256", Assert.Throws<CaptureException>(() => LocalKeySigner.Load(dir.File("p384.key"))).Message);
        File.WriteAllText(dir.File("junk.key"), "-----BEGIN NOTHING-----\n");
        Assert.Contains("not a PEM EC private key", Assert.Throws<CaptureException>(() => LocalKeySigner.Load(dir.File("junk.key"))).Message);
        Assert.Contains("exists: not overwritten", Assert.Throws<CaptureException>(() => LocalKeySigner.Generate(dir.File("custody.key"), dir.File("x.pub"))).Message);
        if (!OperatingSystem.IsWindows())
        {
            Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(dir.File("custody.key")));
        }
    }

    [Fact]
    public void Cli_custody_keygen_sign_and_verify()
    {
        using var dir = new TempDir();
        (int exit, string stdout, string stderr) = CliRunner.Run(null, null, "custody", "keygen", dir.File("ours"));
        Assert.True(exit == 0, stderr);
        Assert.Contains("key sha256:", stdout);
        (exit, _, stderr) = CliRunner.Run(null, null, "custody", "keygen", dir.File("theirs"));
        Assert.True(exit == 0, stderr);
        string manifest;
        using (LocalKeySigner ours = LocalKeySigner.Load(dir.File("ours.key")))
        {
            manifest = SignedManifest(dir, ours);
        }

        (exit, stdout, stderr) = CliRunner.Run(null, null, "custody", "verify", manifest, "--key", dir.File("ours.pub"));
        Assert.True(exit == 0, stderr);
        Assert.Contains("signature valid", stdout);

        (exit, _, stderr) = CliRunner.Run(null, null, "custody", "verify", manifest, "--key", dir.File("theirs.pub"));
        Assert.Equal(2, exit);
        Assert.Contains("not by the given key", stderr);

        byte[] bytes = File.ReadAllBytes(manifest);
        bytes[bytes.Length / 2] ^= 0x20;
        File.WriteAllBytes(manifest, bytes);
        (exit, _, stderr) = CliRunner.Run(null, null, "custody", "verify", manifest, "--key", dir.File("ours.pub"));
        Assert.Equal(2, exit);
        Assert.Contains("changed since it was signed", stderr);

        // Re-signed by someone else's key: valid only for that key.
        (exit, _, stderr) = CliRunner.Run(null, null, "custody", "sign", manifest, "--key", dir.File("theirs.key"));
        Assert.True(exit == 0, stderr);
        (exit, _, stderr) = CliRunner.Run(null, null, "custody", "verify", manifest, "--key", dir.File("ours.pub"));
        Assert.Equal(2, exit);
        Assert.Contains("not by the given key", stderr);
    }
}
