using System.Text;
using System.Text.Json;
using CloudMem.Engine.Core;
using CloudMem.Engine.Linux;
using CloudMem.Tests.Support;
using CloudMem.VmStateParsers;

namespace CloudMem.Tests.Linux;

/// <summary>linux.secrets against the secrets the rootkit fixture planted in one process (truth.json.rootkit.secrets).</summary>
public sealed class LinuxSecretsTests
{
    [SkippableFact]
    public void Every_planted_secret_is_found_once_in_the_holder_process_and_redacted_by_default()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement planted = truth.RootElement.GetProperty("rootkit").GetProperty("secrets");
        int holder = planted.GetProperty("pid").GetInt32();
        string pem = planted.GetProperty("pem_private_key").GetString()!;
        string keyId = planted.GetProperty("aws_access_key_id").GetString()!;
        string secret = planted.GetProperty("aws_secret_access_key").GetString()!;
        LinuxContext context = LinuxContext.Open(memory);

        var redacted = LinuxSecrets.Scan(context);
        LinuxSecret key = Assert.Single(redacted.Rows, r => r.Kind == SecretKind.PemPrivateKey);
        LinuxSecret aws = Assert.Single(redacted.Rows, r => r.Kind == SecretKind.AwsAccessKey);
        Assert.Equal(holder, key.Pid);
        Assert.Equal(holder, aws.Pid);
        Assert.Equal(pem.Length, key.Length);
        Assert.Equal("[heap]", key.Mapping);
        Assert.All(redacted.Rows, r => Assert.Null(r.Value));
        Assert.DoesNotContain(redacted.Rows, r => r.Preview.Contains(secret, StringComparison.Ordinal) || r.Preview.Contains(keyId, StringComparison.Ordinal)
            || r.Preview.Contains(pem.Split('\n')[1], StringComparison.Ordinal));
        Assert.StartsWith("-----BEGIN PRIVATE KEY----- ", key.Preview, StringComparison.Ordinal);
        Assert.StartsWith(keyId[..8], aws.Preview, StringComparison.Ordinal);
        Assert.NotNull(aws.SecretAddress);

        // The full values only on request, at the addresses the process holds them (its own memory agrees).
        var full = LinuxSecrets.Scan(context, new HashSet<int> { holder }, reveal: true);
        Assert.All(full.Rows, r => Assert.Equal(holder, r.Pid));
        Assert.Equal(pem, Assert.Single(full.Rows, r => r.Kind == SecretKind.PemPrivateKey).Value);
        Assert.Equal($"{keyId} {secret}", Assert.Single(full.Rows, r => r.Kind == SecretKind.AwsAccessKey).Value);
        var space = LinuxMalfind.UserSpace(context, holder, default)!;
        byte[] at = new byte[40];
        Assert.Equal(40, space.Read(aws.SecretAddress!.Value, at));
        Assert.Equal(secret, Encoding.ASCII.GetString(at));
    }

    [SkippableFact]
    public void The_planted_azure_sas_token_and_connection_string_are_found_once_with_their_keys_redacted()
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require("memory.raw", "rootkit"));
        using JsonDocument truth = Fixture.Truth("rootkit");
        JsonElement planted = truth.RootElement.GetProperty("rootkit").GetProperty("secrets");
        int holder = planted.GetProperty("pid").GetInt32();
        string sas = planted.GetProperty("azure_sas_token").GetString()!;
        string connection = planted.GetProperty("azure_connection_string").GetString()!;
        string signature = sas[(sas.IndexOf("sig=", StringComparison.Ordinal) + 4)..];
        string accountKey = connection.Split(';').Single(p => p.StartsWith("AccountKey=", StringComparison.Ordinal))["AccountKey=".Length..];
        LinuxContext context = LinuxContext.Open(memory);

        var redacted = LinuxSecrets.Scan(context);
        LinuxSecret token = Assert.Single(redacted.Rows, r => r.Kind == SecretKind.AzureSasToken);
        LinuxSecret account = Assert.Single(redacted.Rows, r => r.Kind == SecretKind.AzureConnectionString);
        Assert.Equal((holder, "[heap]", sas.Length), (token.Pid, token.Mapping, token.Length));
        Assert.Equal((holder, "[heap]", connection.Length), (account.Pid, account.Mapping, account.Length));
        Assert.DoesNotContain(signature, token.Preview, StringComparison.Ordinal);
        Assert.DoesNotContain(accountKey, account.Preview, StringComparison.Ordinal);
        Assert.StartsWith(sas[..sas.IndexOf("sig=", StringComparison.Ordinal)], token.Preview, StringComparison.Ordinal);
        Assert.Contains("AccountName=cloudmemrk;AccountKey=" + accountKey[..4] + "…", account.Preview, StringComparison.Ordinal);

        var full = LinuxSecrets.Scan(context, new HashSet<int> { holder }, reveal: true);
        Assert.Equal(sas, Assert.Single(full.Rows, r => r.Kind == SecretKind.AzureSasToken).Value);
        Assert.Equal(connection, Assert.Single(full.Rows, r => r.Kind == SecretKind.AzureConnectionString).Value);
        var space = LinuxMalfind.UserSpace(context, holder, default)!;
        byte[] at = new byte[connection.Length];
        Assert.Equal(at.Length, space.Read(account.Address, at));
        Assert.Equal(connection, Encoding.ASCII.GetString(at));
    }

    [SkippableTheory]
    [InlineData("basic", "memory.raw")]
    [InlineData("pti", "memory.elf")]
    public void The_clean_capture_holds_no_secret(string variant, string file)
    {
        using RunMappedMemory memory = CaptureOpener.Open(Fixture.Require(file, variant));
        var report = LinuxSecrets.Scan(LinuxContext.Open(memory));
        // The basic scenario's AWS_ACCESS_KEY_ID=AKIAFAKEACCESSKEY00000 has 22 characters: not an access key id.
        Assert.Empty(report.Rows);
    }

    [Fact]
    public void Reveal_is_refused_by_plugins_that_find_no_secrets()
    {
        PluginInfo pslist = PluginRegistry.Get("linux.pslist").Info;
        Assert.Contains("--reveal", PluginRegistry.Validate(pslist, new PluginArguments { RevealSecrets = true }), StringComparison.Ordinal);
        PluginInfo secrets = PluginRegistry.Get("linux.secrets").Info;
        Assert.Null(PluginRegistry.Validate(secrets, new PluginArguments { RevealSecrets = true }));
    }
}
