using System.ComponentModel;
using CloudMem.Connectors.Core;
using Spectre.Console;
using Spectre.Console.Cli;

namespace CloudMem.Cli.Commands;

/// <summary>cloudmem custody verify MANIFEST [--key PUB.pem] [--signature FILE]</summary>
[Description("Verify a custody manifest's signature (MANIFEST.sig): unchanged since signed, and, with --key, signed by that key")]
internal sealed class CustodyVerifyCommand : Command<CustodyVerifyCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<MANIFEST>")]
        [Description("The custody manifest (.custody.json)")]
        public string Manifest { get; init; } = "";

        [CommandOption("--key <PUBLIC_KEY>")]
        [Description("PEM public key the manifest must be signed with (without it the key in the signature file is used, and not trusted)")]
        public string? Key { get; init; }

        [CommandOption("--keyvault-key <KEY_URL>")]
        [Description("Azure Key Vault key (https://VAULT.vault.azure.net/keys/NAME/VERSION) whose public key the manifest must be signed with; fetched with the default Azure credential")]
        public string? KeyVaultKey { get; init; }

        [CommandOption("--signature <FILE>")]
        [Description("Signature file; default MANIFEST.sig")]
        public string? Signature { get; init; }

        public override ValidationResult Validate()
            => Key is not null && KeyVaultKey is not null ? ValidationResult.Error("give --key or --keyvault-key, not both") : ValidationResult.Success();
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        ManifestVerification result = settings.KeyVaultKey is { } vaultKey
            ? ManifestSigning.Verify(settings.Manifest, settings.Signature, AzureCli.KeyVaultSigner(vaultKey).PublicKey, vaultKey)
            : ManifestSigning.Verify(settings.Manifest, settings.Signature, settings.Key);
        if (!result.Valid)
        {
            Console.Error.WriteLine($"cloudmem: error: {result.Reason}");
            return (int)ExitCode.Error;
        }
        Console.Out.WriteLine(result.Reason);
        return (int)ExitCode.Ok;
    }
}

/// <summary>cloudmem custody sign MANIFEST --key PRIVATE.pem</summary>
[Description("Sign a custody manifest with a local P-256 key (writes MANIFEST.sig); captures sign their own with --sign-key")]
internal sealed class CustodySignCommand : Command<CustodySignCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<MANIFEST>")]
        public string Manifest { get; init; } = "";

        [CommandOption("--key <PRIVATE_KEY>")]
        [Description("PEM ECDSA P-256 private key (cloudmem custody keygen)")]
        public string Key { get; init; } = "";

        public override ValidationResult Validate()
            => Key.Length == 0 ? ValidationResult.Error("--key PRIVATE_KEY is required") : ValidationResult.Success();
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        using LocalKeySigner signer = LocalKeySigner.Load(settings.Key);
        string path = ManifestSigning.SignFile(settings.Manifest, signer);
        Console.Out.WriteLine($"signed with key {ManifestKeys.KeyId(signer.PublicKey)}: {path}");
        return (int)ExitCode.Ok;
    }
}

/// <summary>cloudmem custody keygen PREFIX</summary>
[Description("Make an ECDSA P-256 key pair for signing manifests: PREFIX.key (private, mode 0600) and PREFIX.pub")]
internal sealed class CustodyKeygenCommand : Command<CustodyKeygenCommand.Settings>
{
    internal sealed class Settings : CommandSettings
    {
        [CommandArgument(0, "<PREFIX>")]
        public string Prefix { get; init; } = "";
    }

    public override int Execute(CommandContext context, Settings settings, CancellationToken cancellationToken)
    {
        string keyId = LocalKeySigner.Generate(settings.Prefix + ".key", settings.Prefix + ".pub");
        Console.Out.WriteLine($"{settings.Prefix}.key (private) and {settings.Prefix}.pub: key {keyId}");
        return (int)ExitCode.Ok;
    }
}
