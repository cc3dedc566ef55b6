using Spectre.Console;

namespace CloudMem.Cli.Commands;

/// <summary>The <c>--symbol-server URL</c> option shared by <c>symbols check</c> and the Windows plugins.</summary>
internal static class SymbolServerOption
{
    public const string Template = "--symbol-server <URL>";

    public const string Description =
        "Download a PDB missing from the symbol directories from this symbol server (Microsoft's layout, e.g. https://msdl.microsoft.com/download/symbols) "
        + "into the per-user cache; without this option nothing is downloaded";

    /// <summary>An error for a value that is not an absolute http(s) URL, or null.</summary>
    public static ValidationResult? Validate(string? value)
        => value is null || Parse(value) is not null
            ? null
            : ValidationResult.Error($"--symbol-server must be an http or https URL, not '{value}'");

    public static Uri? Parse(string? value)
        => value is not null && Uri.TryCreate(value, UriKind.Absolute, out Uri? uri) && (uri.Scheme == Uri.UriSchemeHttp || uri.Scheme == Uri.UriSchemeHttps)
            ? uri
            : null;
}
