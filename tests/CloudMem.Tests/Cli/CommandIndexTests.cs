using System.Reflection;
using CloudMem.Tests.Support;
using Spectre.Console.Cli;

namespace CloudMem.Tests.Cli;

/// <summary>The CLI contract: what a newcomer types wrong is refused with a useful line, never ignored.</summary>
public sealed class CommandIndexTests
{
    [Fact]
    public void Every_command_class_is_known_to_the_option_check()
    {
        // A command configured in CliApp but missing from the index would be refused as "unknown command".
        Type[] commands = [.. typeof(CloudMem.Cli.CommandIndex).Assembly.GetTypes()
            .Where(t => !t.IsAbstract && !t.IsGenericTypeDefinition && typeof(ICommand).IsAssignableFrom(t))];
        Assert.NotEmpty(commands);
        var (exit, output, error) = CliRunner.Run(null, null, "--help");
        Assert.Equal(0, exit);
        foreach (Type command in commands)
        {
            string? description = command.GetCustomAttribute<System.ComponentModel.DescriptionAttribute>()?.Description;
            Assert.False(string.IsNullOrEmpty(description), $"{command.Name} has no [Description]");
            Assert.Contains(description!, output, StringComparison.Ordinal);
        }
        Assert.Empty(error);
    }

    [Theory]
    [InlineData("linux.pslist", "--outptu", "--output")]
    [InlineData("windows.pslist", "--symbol", "--symbols")]
    [InlineData("linux.maps", "--pdi", "--pid")]
    [InlineData("convert", "--too", "--to")]
    [InlineData("capture aws", "--buckt", "--bucket")]
    public void A_misspelled_option_is_refused_with_the_closest_one(string command, string typo, string meant)
    {
        string[] args = [.. command.Split(' '), "image.raw", typo, "x"];
        var (exit, output, error) = CliRunner.Run(null, null, args);
        Assert.Equal(2, exit);
        Assert.Empty(output);
        Assert.Equal($"cloudmem: usage: {command} has no option '{typo}' (did you mean {meant}?) (see cloudmem {command.Split(' ')[0]} --help)", error.Trim());
    }

    [Fact]
    public void Bare_cloudmem_prints_the_grouped_help_and_fails_and_version_prints_one_line()
    {
        var (exit, output, error) = CliRunner.Run(null, null);
        Assert.Equal(2, exit);
        Assert.Empty(output);
        foreach (string group in CloudMem.Cli.CommandIndex.Groups)
        {
            Assert.Contains(group + ":", error, StringComparison.Ordinal);
        }
        Assert.True(error.IndexOf("linux.pslist", StringComparison.Ordinal) < error.IndexOf("windows.pslist", StringComparison.Ordinal));
        (exit, output, _) = CliRunner.Run(null, null, "--version");
        Assert.Equal(0, exit);
        Assert.Matches(@"^cloudmem \d+\.\d+\.\d+\s*$", output);
        (exit, _, error) = CliRunner.Run(null, null, "linux.pslst", "x");
        Assert.Equal(2, exit);
        Assert.Contains("unknown command 'linux.pslst' (did you mean linux.pslist?)", error, StringComparison.Ordinal);
    }
}
