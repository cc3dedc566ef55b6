using CloudMem.VmStateParsers.IO;

namespace CloudMem.VmStateParsers.Formats.HyperV;

/// <summary>The key tree: parents linked by location, paths and depths, cycles refused.</summary>
internal sealed partial class HyperVStorage
{
    private void BuildTree()
    {
        var byLocation = new Dictionary<(ushort, uint), HyperVKey>(_keys.Count);
        foreach (HyperVKey key in _keys)
        {
            byLocation[(key.Table, key.OffsetInTable)] = key;
        }
        int orphans = 0;
        foreach (HyperVKey key in _keys)
        {
            if (key.ParentTable == 0)
            {
                Roots.Add(key);
                continue;
            }
            if (!byLocation.TryGetValue((key.ParentTable, key.ParentOffset), out HyperVKey? parent) || parent.Type != HyperVKeyType.Node)
            {
                orphans++;
                continue;
            }
            key.Parent = parent;
            (parent.Children ??= []).Add(key);
        }
        if (orphans > 0)
        {
            Warnings.Add($"{orphans} keys name a parent that is missing or not a node; they (and their children) are not shown");
        }
        CheckCycles();
        // Depth-first listing in insertion order; same-named siblings (arrays) get an [i] suffix.
        var stack = new Stack<(HyperVKey Key, string Path, int Depth)>();
        PushChildren(stack, Roots, "", 1);
        while (stack.Count > 0)
        {
            (HyperVKey key, string path, int depth) = stack.Pop();
            if (depth > _limits.MaxHyperVKeyDepth)
            {
                throw Fail.At(FormatName, $"key '{key.Name}'", key.EntryFileOffset, $"keys nest deeper than {_limits.MaxHyperVKeyDepth} levels (ParserLimits.MaxHyperVKeyDepth)");
            }
            key.Path = path;
            key.Depth = depth;
            Keys.Add(key);
            if (key.Children is not null)
            {
                PushChildren(stack, key.Children, path, depth + 1);
            }
        }
    }

    private static void PushChildren(Stack<(HyperVKey, string, int)> stack, List<HyperVKey> children, string parentPath, int depth)
    {
        children.Sort(static (a, b) => a.InsertionSequence != b.InsertionSequence
            ? a.InsertionSequence.CompareTo(b.InsertionSequence)
            : a.EntryFileOffset.CompareTo(b.EntryFileOffset));
        var counts = new Dictionary<string, int>();
        foreach (HyperVKey child in children)
        {
            counts[child.Name] = counts.GetValueOrDefault(child.Name) + 1;
        }
        var seen = new Dictionary<string, int>();
        var paths = new string[children.Count];
        for (int i = 0; i < children.Count; i++)
        {
            string name = children[i].Name;
            if (counts[name] > 1)
            {
                int n = seen.GetValueOrDefault(name);
                seen[name] = n + 1;
                name = $"{name}[{n}]";
            }
            paths[i] = parentPath + "/" + name;
        }
        for (int i = children.Count - 1; i >= 0; i--)
        {
            stack.Push((children[i], paths[i], depth));
        }
    }

    /// <summary>A parent chain that loops never reaches the root: find it before walking the tree.</summary>
    private void CheckCycles()
    {
        var state = new Dictionary<HyperVKey, bool>(ReferenceEqualityComparer.Instance); // false: on the current walk, true: done
        var walk = new List<HyperVKey>();
        foreach (HyperVKey start in _keys)
        {
            walk.Clear();
            HyperVKey? key = start;
            while (key is not null && !state.ContainsKey(key))
            {
                state[key] = false;
                walk.Add(key);
                key = key.Parent;
            }
            if (key is not null && !state[key])
            {
                throw Fail.At(FormatName, $"key '{key.Name}'", key.EntryFileOffset, "the key's parent chain loops back to itself (a cycle in the key tree)");
            }
            foreach (HyperVKey done in walk)
            {
                state[done] = true;
            }
        }
    }
}
