using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Amazon.Runtime;
using CloudMem.Connectors.Aws;
using CloudMem.Connectors.Core;
using CloudMem.Tests.Support;

namespace CloudMem.Tests.Connectors.Aws;

/// <summary>
/// KMS has no local server: a stub speaking KMS's JSON 1.1 protocol (X-Amz-Target TrentService.GetPublicKey / Sign) with
/// a real P-256 key, which checks what the real SDK sends (DIGEST of 32 bytes, ECDSA_SHA_256).
/// </summary>
public sealed class KmsSignerTests
{
    private const string KeyArn = "arn:aws:kms:us-east-1:123456789012:key/0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d";

    private sealed class FakeKms : IDisposable
    {
        private readonly HttpListener _listener = new();
        private readonly Task _serving;

        public FakeKms(string keySpec = "ECC_NIST_P256")
        {
            KeySpec = keySpec;
            Port = Emulators.FreePort();
            _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
            _listener.Start();
            _serving = Task.Run(ServeAsync);
        }

        public ECDsa Key { get; } = ECDsa.Create(ECCurve.NamedCurves.nistP256);

        public string KeySpec { get; }

        /// <summary>Answer Sign with DisabledException (the key was disabled after the signer was made).</summary>
        public bool DisableSign { get; set; }

        public int Port { get; }

        public List<(string Target, JsonObject Body)> Requests { get; } = [];

        private async Task ServeAsync()
        {
            while (_listener.IsListening)
            {
                HttpListenerContext context;
                try
                {
                    context = await _listener.GetContextAsync();
                }
                catch (Exception e) when (e is HttpListenerException or ObjectDisposedException)
                {
                    return;
                }
                string target = context.Request.Headers["X-Amz-Target"] ?? "";
                var body = (JsonObject)JsonNode.Parse(await new StreamReader(context.Request.InputStream).ReadToEndAsync())!;
                lock (Requests)
                {
                    Requests.Add((target, body));
                }
                JsonObject answer = target switch
                {
                    "TrentService.GetPublicKey" => new JsonObject
                    {
                        ["KeyId"] = KeyArn,
                        ["PublicKey"] = Convert.ToBase64String(Key.ExportSubjectPublicKeyInfo()),
                        ["KeySpec"] = KeySpec,
                        ["KeyUsage"] = "SIGN_VERIFY",
                        ["SigningAlgorithms"] = new JsonArray("ECDSA_SHA_256"),
                    },
                    "TrentService.Sign" when DisableSign => new JsonObject { ["__type"] = "DisabledException", ["message"] = "key is disabled" },
                    "TrentService.Sign" => new JsonObject
                    {
                        ["KeyId"] = KeyArn,
                        ["Signature"] = Convert.ToBase64String(Key.SignHash(Convert.FromBase64String((string)body["Message"]!), DSASignatureFormat.Rfc3279DerSequence)),
                        ["SigningAlgorithm"] = "ECDSA_SHA_256",
                    },
                    _ => new JsonObject { ["__type"] = "UnsupportedOperationException" },
                };
                byte[] bytes = Encoding.UTF8.GetBytes(answer.ToJsonString());
                context.Response.StatusCode = answer.ContainsKey("__type") ? 400 : 200;
                context.Response.ContentType = "application/x-amz-json-1.1";
                context.Response.Headers["x-amzn-RequestId"] = Guid.NewGuid().ToString();
                await context.Response.OutputStream.WriteAsync(bytes);
                context.Response.Close();
            }
        }

        public AwsConnection Connection => new()
        {
            Region = "us-east-1",
            Credentials = new BasicAWSCredentials(AwsHarness.AccessKey, AwsHarness.SecretKey),
            Endpoints = new AwsEndpoints { Kms = $"http://127.0.0.1:{Port}" },
        };

        public void Dispose()
        {
            HttpListenerLoop.Shut(_listener);
            _serving.Wait(TimeSpan.FromSeconds(5));
            Key.Dispose();
        }
    }

    [Fact]
    public void A_manifest_signed_with_a_kms_key_verifies_with_its_public_key()
    {
        using var kms = new FakeKms();
        using var dir = new TempDir();
        File.WriteAllText(dir.File("kms.pub"), kms.Key.ExportSubjectPublicKeyInfoPem());
        using KmsManifestSigner signer = KmsManifestSigner.Create(kms.Connection, "alias/cloudmem-custody");
        Assert.Equal($"aws-kms:{KeyArn}", signer.Signer);

        var recorder = new CustodyRecorder("aws", "i-0123456789abcdef0", "ssm", new CaptureRequest { OutputDirectory = dir.Path, Signer = signer }, new CaptureLog(new SecretScrubber(), TextWriter.Null));
        recorder.Step("capture", "done");
        string manifest = recorder.Write();

        ManifestVerification result = ManifestSigning.Verify(manifest, trustedPublicKeyPath: dir.File("kms.pub"));
        Assert.True(result.Valid, result.Reason);
        Assert.Contains($"aws-kms:{KeyArn}", result.Reason);
        (string target, JsonObject sign) = Assert.Single(kms.Requests, r => r.Target == "TrentService.Sign");
        Assert.Equal("DIGEST", (string)sign["MessageType"]!);
        Assert.Equal("ECDSA_SHA_256", (string)sign["SigningAlgorithm"]!);
        Assert.Equal(KeyArn, (string)sign["KeyId"]!);
        Assert.Equal(SHA256.HashData(File.ReadAllBytes(manifest)), Convert.FromBase64String((string)sign["Message"]!));
        Assert.Equal("alias/cloudmem-custody", (string)Assert.Single(kms.Requests, r => r.Target == "TrentService.GetPublicKey").Body["KeyId"]!);

        byte[] bytes = File.ReadAllBytes(manifest);
        bytes[10] ^= 1;
        File.WriteAllBytes(manifest, bytes);
        Assert.False(ManifestSigning.Verify(manifest, trustedPublicKeyPath: dir.File("kms.pub")).Valid);
    }

    [Fact]
    public void A_key_that_is_not_p256_for_signing_is_refused()
    {
        using var kms = new FakeKms("RSA_2048");
        var e = Assert.Throws<CaptureException>(() => KmsManifestSigner.Create(kms.Connection, "alias/wrong"));
        Assert.Contains("is RSA_2048 for SIGN_VERIFY: manifests need an ECC_NIST_P256 SIGN_VERIFY key", e.Message);
    }

    [Fact]
    public void A_signer_that_fails_leaves_the_manifest_written_and_unverifiable()
    {
        using var kms = new FakeKms();
        using var dir = new TempDir();
        using KmsManifestSigner signer = KmsManifestSigner.Create(kms.Connection, "alias/cloudmem-custody");
        kms.DisableSign = true;
        var log = new StringWriter();
        var recorder = new CustodyRecorder("aws", "i-0123456789abcdef0", "ssm", new CaptureRequest { OutputDirectory = dir.Path, Signer = signer }, new CaptureLog(new SecretScrubber(), log));
        recorder.Fail(new CaptureException("the guest command failed"));

        string manifest = recorder.Write();

        Assert.Equal(CustodyStatus.Failed, CustodyManifest.Read(manifest).Status);
        Assert.Contains("manifest NOT signed (aws-kms:", log.ToString());
        Assert.Contains("DisabledException", log.ToString());
        Assert.Throws<CaptureException>(() => ManifestSigning.Verify(manifest));
    }
}
