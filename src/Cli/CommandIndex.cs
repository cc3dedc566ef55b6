using System.ComponentModel;
using System.Reflection;
using CloudMem.Engine.Core;
using Spectre.Console.Cli;

namespace CloudMem.Cli;

/// <summary>
/// What the command line knows before Spectre parses it: every command path with its settings type and description,
/// so that a misspelled command or option is refused with the closest valid name (Spectre would otherwise take an
/// unknown option as a remaining argument and ignore it), and so that <c>cloudmem --help</c> can group the commands.
/// </summary>
internal sealed class CommandIndex
{
    private readonly Dictionary<string, (Type Settings, string Description, string Group)> _commands = new(StringComparer.Ordinal);

    /// <summary>Help groups in the order they are printed.</summary>
    public static readonly string[] Groups = ["Captures", "Linux plugins", "Windows plugins", "Capture and response (cloud, hypervisor)"];

    /// <summary>Records a command (path "capture aws" for branch commands).</summary>
    public void Add<TCommand>(string path, string group, string? description = null) where TCommand : class, ICommand
        => _commands[path] = (SettingsOf(typeof(TCommand)), description ?? typeof(TCommand).GetCustomAttribute<DescriptionAttribute>()?.Description ?? "", group);

    /// <summary>Records every registered plugin.</summary>
    public void AddPlugins()
    {
        foreach (IPlugin plugin in PluginRegistry.All)
        {
            Type settings = plugin.Info.Os == TargetOs.Windows ? typeof(Commands.WindowsPluginSettings) : typeof(Commands.LinuxPluginSettings);
            _commands[plugin.Info.Name] = (settings, plugin.Info.Description, plugin.Info.Os == TargetOs.Windows ? Groups[2] : Groups[1]);
        }
    }

    /// <summary>The branch names (first words of two-word commands).</summary>
    private IEnumerable<string> Branches => _commands.Keys.Where(k => k.Contains(' ', StringComparison.Ordinal)).Select(k => k[..k.IndexOf(' ', StringComparison.Ordinal)]).Distinct();

    /// <summary>
    /// Checks the command and its options. Returns null when Spectre may parse <paramref name="args"/>, else the usage
    /// problem (one line).
    /// </summary>
    public string? Check(string[] args)
    {
        string first = args[0];
        if (first.StartsWith('-'))
        {
            return null;
        }
        string path = first;
        int next = 1;
        if (Branches.Contains(first, StringComparer.Ordinal))
        {
            if (args.Length < 2 || args[1].StartsWith('-'))
            {
                return null;
            }
            path = $"{first} {args[1]}";
            next = 2;
        }
        if (!_commands.TryGetValue(path, out var command))
        {
            string? closest = Spelling.Closest(path, _commands.Keys.Concat(Branches));
            return $"unknown command '{path}'" + (closest is null ? "" : $" (did you mean {closest}?)");
        }
        string[] options = [.. OptionNames(command.Settings), "-h", "--help"];
        for (int i = next; i < args.Length; i++)
        {
            string token = args[i];
            if (token == "--")
            {
                break;
            }
            if (!token.StartsWith('-') || token.Length < 2 || char.IsDigit(token[1]))
            {
                continue;
            }
            string name = token.Split('=', 2)[0];
            if (!options.Contains(name, StringComparer.Ordinal))
            {
                string? closest = Spelling.Closest(name, options.Where(o => o.StartsWith("--", StringComparison.Ordinal)));
                return $"{path} has no option '{name}'" + (closest is null ? "" : $" (did you mean {closest}?)");
            }
        }
        return null;
    }

    /// <summary>The overview printed by <c>cloudmem</c> and <c>cloudmem --help</c>.</summary>
    public void WriteHelp(TextWriter writer, string version)
    {
        writer.WriteLine($"cloudmem {version}: memory forensics for cloud and hypervisor virtual machines");
        writer.WriteLine();
        writer.WriteLine("Usage: cloudmem COMMAND [ARGUMENTS] [OPTIONS]    (cloudmem COMMAND --help for its options)");
        foreach (string group in Groups)
        {
            var rows = _commands.Where(c => c.Value.Group == group).OrderBy(c => c.Key, StringComparer.Ordinal).ToList();
            if (rows.Count == 0)
            {
                continue;
            }
            writer.WriteLine();
            writer.WriteLine(group + ":");
            int width = rows.Max(r => r.Key.Length) + 2;
            foreach (var (name, (_, description, _)) in rows)
            {
                writer.WriteLine($"  {name.PadRight(width)}{description}");
            }
        }
        writer.WriteLine();
        writer.WriteLine("Common options: -o|--output table|json|jsonl|csv, --format NAME (skip detection); --version");
    }

    private static Type SettingsOf(Type command)
    {
        for (Type? t = command; t is not null; t = t.BaseType)
        {
            if (t.IsGenericType && t.GetGenericArguments() is [Type settings] && typeof(CommandSettings).IsAssignableFrom(settings))
            {
                return settings;
            }
        }
        throw new InvalidOperationException($"{command.Name} has no settings type");
    }

    private static IEnumerable<string> OptionNames(Type settings)
        => settings.GetProperties(BindingFlags.Public | BindingFlags.Instance)
            .Select(p => p.GetCustomAttribute<CommandOptionAttribute>())
            .OfType<CommandOptionAttribute>()
            .SelectMany(a => a.LongNames.Select(n => "--" + n).Concat(a.ShortNames.Select(n => "-" + n)));
}

/// <summary>Small helpers for the fluent command configuration.</summary>
internal static class ConfiguratorExtensions
{
    /// <summary>Runs <paramref name="action"/> and returns the configurator (records a command while configuring it).</summary>
    public static ICommandConfigurator Also(this ICommandConfigurator configurator, Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        action();
        return configurator;
    }
}
