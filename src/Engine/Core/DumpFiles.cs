namespace CloudMem.Engine.Core;

/// <summary>
/// The one rule for files that plugins write: created new in an existing directory, never overwriting; an existing
/// file is not an error for the run, it is that row's result ("NAME exists: not overwritten") and the plugin goes on.
/// </summary>
public static class DumpFiles
{
    /// <summary>The result text of a file that was written.</summary>
    public const string Written = "written";

    /// <summary>
    /// Creates <paramref name="name"/> in <paramref name="directory"/>, or returns null and sets <paramref name="result"/>
    /// to the reason when a file of that name exists (checked atomically by the create).
    /// </summary>
    public static FileStream? CreateNew(string directory, string name, out string result)
    {
        string path = Path.Combine(directory, name);
        try
        {
            var stream = new FileStream(path, FileMode.CreateNew, FileAccess.Write);
            result = Written;
            return stream;
        }
        catch (IOException) when (File.Exists(path) || Directory.Exists(path))
        {
            result = $"{name} exists: not overwritten";
            return null;
        }
    }
}
