namespace FineTune.TestKit;

/// <summary>The checkout the tests run from, for checking shipped files (README, schema, pipelines) against the code.</summary>
internal static class Repository
{
    public static string Root { get; } = FindRoot();

    public static string File(string relative) => Path.Combine(Root, relative);

    private static string FindRoot()
    {
        for (var folder = new DirectoryInfo(AppContext.BaseDirectory); folder is not null; folder = folder.Parent)
            if (System.IO.File.Exists(Path.Combine(folder.FullName, "FineTune.sln"))) return folder.FullName;
        throw new InvalidOperationException($"no FineTune.sln above {AppContext.BaseDirectory}");
    }
}
