namespace CloudMem.Engine.Core;

/// <summary>Orders items that name their parent (processes) as a forest, depth first, without recursion: parent links
/// come from memory, so chains may be long and may loop.</summary>
internal static class Forest
{
    /// <summary>
    /// Every index of <c>0..count-1</c> exactly once, each parent before its children, with its depth (0 for roots).
    /// Roots are items whose <paramref name="parentOf"/> is null or themselves; items only reachable through a parent
    /// cycle are emitted as roots after the others. Roots and siblings keep index order, or follow <paramref name="order"/>.
    /// </summary>
    public static List<(int Index, int Depth)> DepthFirst(int count, Func<int, int?> parentOf, Comparison<int>? order = null)
    {
        var children = new Dictionary<int, List<int>>();
        var roots = new List<int>();
        for (int i = 0; i < count; i++)
        {
            int? parent = parentOf(i);
            if (parent is not { } p || p == i || p < 0 || p >= count)
            {
                roots.Add(i);
                continue;
            }
            if (!children.TryGetValue(p, out List<int>? list))
            {
                children[p] = list = [];
            }
            list.Add(i);
        }
        if (order is not null)
        {
            roots.Sort(order);
            foreach (List<int> list in children.Values)
            {
                list.Sort(order);
            }
        }
        var result = new List<(int, int)>(count);
        var visited = new bool[count];
        var stack = new Stack<(int Index, int Depth)>();
        void Visit(int root)
        {
            stack.Push((root, 0));
            while (stack.Count > 0)
            {
                (int i, int depth) = stack.Pop();
                if (visited[i])
                {
                    continue;
                }
                visited[i] = true;
                result.Add((i, depth));
                if (children.TryGetValue(i, out List<int>? list))
                {
                    for (int k = list.Count - 1; k >= 0; k--)
                    {
                        stack.Push((list[k], depth + 1));
                    }
                }
            }
        }
        foreach (int root in roots)
        {
            Visit(root);
        }
        for (int i = 0; i < count; i++)
        {
            if (!visited[i])
            {
                Visit(i);
            }
        }
        return result;
    }
}
