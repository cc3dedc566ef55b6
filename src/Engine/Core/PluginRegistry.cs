using System.Collections.Concurrent;

namespace CloudMem.Engine.Core;

/// <summary>
/// Every analysis plugin, by name. The command line, <c>--help</c> and <c>analyze</c> read this one list. Each plugin
/// file registers its plugins from a module initializer (<see cref="System.Runtime.CompilerServices.ModuleInitializerAttribute"/>),
/// so adding a plugin is one engine file plus its tests; other assemblies may call <see cref="Register(IPlugin)"/>.
/// </summary>
public static class PluginRegistry
{
    private static readonly ConcurrentDictionary<string, IPlugin> s_plugins = new(StringComparer.Ordinal);

    /// <summary>Adds a plugin. Names are unique.</summary>
    /// <exception cref="InvalidOperationException">A plugin of that name exists.</exception>
    public static void Register(IPlugin plugin)
    {
        ArgumentNullException.ThrowIfNull(plugin);
        if (!s_plugins.TryAdd(plugin.Info.Name, plugin))
        {
            throw new InvalidOperationException($"a plugin named {plugin.Info.Name} is already registered");
        }
    }

    /// <summary>Adds a plugin made of a description and a function.</summary>
    public static void Register(PluginInfo info, Func<PluginContext, PluginArguments, CancellationToken, Output.IReport> run)
        => Register(new Plugin(info, run));

    /// <summary>Adds a plugin from its parts (what every plugin file's module initializer calls).</summary>
    public static void Register(string name, string description, TargetOs os, PluginInputs inputs,
        Func<PluginContext, PluginArguments, CancellationToken, Output.IReport> run)
        => Register(new PluginInfo(name, description, os, inputs), run);

    /// <summary>Every plugin, ordered by OS then name.</summary>
    public static IReadOnlyList<IPlugin> All => [.. s_plugins.Values.OrderBy(p => p.Info.Os).ThenBy(p => p.Info.Name, StringComparer.Ordinal)];

    /// <summary>The plugin of that name.</summary>
    public static bool TryGet(string name, out IPlugin plugin) => s_plugins.TryGetValue(name, out plugin!);

    /// <summary>The plugin of that name, or a clear error naming the closest one.</summary>
    /// <exception cref="ArgumentException">No plugin of that name.</exception>
    public static IPlugin Get(string name)
    {
        if (TryGet(name, out IPlugin plugin))
        {
            return plugin;
        }
        string? closest = Spelling.Closest(name, s_plugins.Keys);
        throw new ArgumentException($"no plugin named '{name}'" + (closest is null ? "" : $" (did you mean {closest}?)"));
    }

    /// <summary>Checks <paramref name="arguments"/> against what the plugin takes; returns the problem or null.</summary>
    public static string? Validate(PluginInfo info, PluginArguments arguments)
    {
        ArgumentNullException.ThrowIfNull(info);
        ArgumentNullException.ThrowIfNull(arguments);
        if (arguments.Pids is { Count: > 0 } && !info.TakesPids)
        {
            return $"{info.Name} does not take --pid (it does not work per process)";
        }
        if ((info.Inputs & PluginInputs.SingleProcess) != 0 && arguments.Pids is not { Count: 1 })
        {
            return $"{info.Name} needs exactly one --pid";
        }
        if (arguments.OutputDirectory is not null && (info.Inputs & PluginInputs.OutputDirectory) == 0)
        {
            return $"{info.Name} does not take --out (it writes no files)";
        }
        if (arguments.OutputDirectory is null && (info.Inputs & PluginInputs.OutputDirectory) != 0)
        {
            return $"{info.Name}: --out DIR is required (an existing directory; files are never overwritten)";
        }
        if (arguments.BaseAddress is not null && (info.Inputs & PluginInputs.BaseAddress) == 0)
        {
            return $"{info.Name} does not take --base";
        }
        if (arguments.RevealSecrets && (info.Inputs & PluginInputs.RevealSecrets) == 0)
        {
            return $"{info.Name} does not take --reveal (it finds no secrets)";
        }
        if (arguments.KeyPath is not null && (info.Inputs & PluginInputs.KeyPath) == 0)
        {
            return $"{info.Name} does not take --key";
        }
        if (arguments.YaraRules is not null && (info.Inputs & PluginInputs.YaraRules) == 0)
        {
            return $"{info.Name} does not take --yara (it runs no YARA rules)";
        }
        if (arguments.YaraRules is null && (info.Inputs & PluginInputs.YaraRules) != 0)
        {
            return $"{info.Name}: --yara FILE|DIR is required (a rule file, or a directory of .yar/.yara files)";
        }
        return null;
    }
}

/// <summary>Closest-name suggestions for misspelled commands and options.</summary>
public static class Spelling
{
    /// <summary>The candidate closest to <paramref name="word"/> by edit distance, if it is close enough to be a typo.</summary>
    public static string? Closest(string word, IEnumerable<string> candidates)
    {
        ArgumentNullException.ThrowIfNull(word);
        ArgumentNullException.ThrowIfNull(candidates);
        string? best = null;
        int bestDistance = int.MaxValue;
        foreach (string candidate in candidates)
        {
            int d = Distance(word, candidate);
            if (d < bestDistance || (d == bestDistance && best is not null && string.CompareOrdinal(candidate, best) < 0))
            {
                best = candidate;
                bestDistance = d;
            }
        }
        return best is not null && bestDistance <= Math.Max(2, word.Length / 3) ? best : null;
    }

    /// <summary>Optimal string alignment distance (insert, delete, substitute, swap neighbours).</summary>
    public static int Distance(string a, string b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        var d = new int[a.Length + 1, b.Length + 1];
        for (int i = 0; i <= a.Length; i++)
        {
            d[i, 0] = i;
        }
        for (int j = 0; j <= b.Length; j++)
        {
            d[0, j] = j;
        }
        for (int i = 1; i <= a.Length; i++)
        {
            for (int j = 1; j <= b.Length; j++)
            {
                int cost = char.ToLowerInvariant(a[i - 1]) == char.ToLowerInvariant(b[j - 1]) ? 0 : 1;
                d[i, j] = Math.Min(Math.Min(d[i - 1, j] + 1, d[i, j - 1] + 1), d[i - 1, j - 1] + cost);
                if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                {
                    d[i, j] = Math.Min(d[i, j], d[i - 2, j - 2] + 1);
                }
            }
        }
        return d[a.Length, b.Length];
    }
}
