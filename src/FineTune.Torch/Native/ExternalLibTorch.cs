using System.Runtime.InteropServices;
using System.Text.RegularExpressions;
using FineTune.Core.Diagnostics;

namespace FineTune.Torch.Native;

/// <summary>
/// <c>FINETUNE_LIBTORCH=&lt;folder&gt;</c>: libtorch from an installed PyTorch (pip's <c>site-packages/torch/lib</c>,
/// with CUDA when that PyTorch has it) instead of the one this build ships. Its libraries are loaded by full path
/// before TorchSharp starts, so TorchSharp's shim (<c>libLibTorchSharp.so</c>) binds to them by their sonames. A shim
/// symbol that library lacks would only fail when first called, mid-training; so first every symbol the shim imports
/// is looked up in the folder's libraries (and in the system libraries the shim needs), and any missing one is a
/// single FT1105 error naming both versions.
/// </summary>
internal static partial class ExternalLibTorch
{
    public const string Variable = "FINETUNE_LIBTORCH";

    /// <summary>The libtorch release TorchSharp's shim is built for (libtorch-cpu-linux-x64 in
    /// Directory.Packages.props).</summary>
    public const string ShimLibTorchVersion = "2.10.0";

    public const string Shim = "libLibTorchSharp.so";

    // Dependencies first: each library's sonames must already be loaded when the next one is.
    private static readonly string[] LoadOrder =
        ["libc10.so", "libtorch_cpu.so", "libc10_cuda.so", "libtorch_cuda.so", "libtorch.so"];

    private static readonly string[] Required = ["libc10.so", "libtorch_cpu.so", "libtorch.so"];

    private static readonly string[] SystemFolders =
        ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/lib", "/usr/lib"];

    private static readonly Lock Gate = new();
    private static string? _loaded;

    /// <summary>Loads the folder <see cref="Variable"/> names, once per process; null when it is not set.</summary>
    public static string? LoadFromEnvironment()
    {
        var folder = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrWhiteSpace(folder)) return null;
        lock (Gate)
        {
            if (_loaded is not null) return _loaded;
            var full = Path.GetFullPath(folder);
            Check(full, ShimPath());
            foreach (var name in LoadOrder.Where(n => File.Exists(Path.Combine(full, n))))
                NativeLibrary.Load(Path.Combine(full, name));
            return _loaded = full;
        }
    }

    /// <summary>
    /// The folder of the libtorch this process runs on: the one <see cref="Variable"/> named, else where
    /// /proc/self/maps says libc10.so came from; null when unknown.
    /// </summary>
    public static string? LoadedFolder()
    {
        lock (Gate) if (_loaded is not null) return _loaded;
        const string maps = "/proc/self/maps";
        if (!File.Exists(maps)) return null;
        var line = File.ReadLines(maps).FirstOrDefault(l => l.EndsWith("/libc10.so", StringComparison.Ordinal));
        return line is null ? null : Path.GetDirectoryName(line[line.IndexOf('/')..]);
    }

    /// <summary>Where this build's shim is: runtimes/linux-x64/native/ of the app, or the app folder when
    /// published flat.</summary>
    public static string ShimPath()
    {
        var nested = Path.Combine(AppContext.BaseDirectory, "runtimes", "linux-x64", "native", Shim);
        return File.Exists(nested) ? nested : Path.Combine(AppContext.BaseDirectory, Shim);
    }

    /// <summary>Throws FT1105 unless <paramref name="folder"/> is a libtorch exporting every symbol
    /// <paramref name="shim"/> imports.</summary>
    public static void Check(string folder, string shim)
    {
        var version = VersionOf(folder);
        if (!Directory.Exists(folder) || Required.Any(name => !File.Exists(Path.Combine(folder, name))))
            throw Error($"{Variable}={folder} is not a libtorch folder: it must hold " +
                $"{string.Join(", ", Required)} (pip: .../site-packages/torch/lib)");
        // TorchSharp loads the libtorch beside its shim by full path: a second libtorch in the process.
        var bundled = Path.Combine(Path.GetDirectoryName(shim)!, "libtorch_cpu.so");
        if (File.Exists(bundled) && !SameFile(bundled, Path.Combine(folder, "libtorch_cpu.so")))
            throw Error($"{Variable}={folder}: this build bundles its own libtorch ({bundled}), which TorchSharp " +
                "would load as well; publish the tool without it (dotnet publish src/FineTune.Cli " +
                "-p:TorchBackend=none) to run on an external libtorch");
        var imports = ElfDynamicSymbols.Read(shim)
            ?? throw Error($"{shim} is not a 64-bit ELF library; {Variable} works on Linux x64 only");
        var provided = new HashSet<string>(StringComparer.Ordinal);
        foreach (var name in LoadOrder.Select(n => Path.Combine(folder, n)).Where(File.Exists))
            if (ElfDynamicSymbols.Read(name) is { } library) provided.UnionWith(library.Defined);
        foreach (var needed in imports.Needed.Where(n => !File.Exists(Path.Combine(folder, n))))
        {
            var path = SystemFolders.Select(f => Path.Combine(f, needed)).FirstOrDefault(File.Exists);
            if (path is not null && ElfDynamicSymbols.Read(path) is { } library) provided.UnionWith(library.Defined);
        }
        // std:: symbols are the C++ runtime's, whichever libtorch is used (and the shim's ios_base_library_init
        // marker is absent from older libstdc++ without harm: see build/TorchSharpGlibcxxFix.targets).
        var missing = imports.Required.Where(s => !provided.Contains(s) && !IsStandardLibrary(s))
            .Order(StringComparer.Ordinal).ToList();
        if (missing.Count == 0) return;
        throw Error($"{Variable}={folder} holds libtorch {version ?? "(version unknown: no ../version.py)"}, but " +
            $"TorchSharp's {Shim} is built for libtorch {ShimLibTorchVersion}: {missing.Count} symbol(s) it " +
            $"imports are missing there ({string.Join(", ", missing.Take(3))}{(missing.Count > 3 ? ", ..." : "")}). " +
            $"Install PyTorch {ShimLibTorchVersion} (pip install torch=={ShimLibTorchVersion}) or unset {Variable}");
    }

    private static bool SameFile(string a, string b) =>
        Path.GetFullPath(new FileInfo(a).ResolveLinkTarget(true)?.FullName ?? a)
        == Path.GetFullPath(new FileInfo(b).ResolveLinkTarget(true)?.FullName ?? b);

    private static bool IsStandardLibrary(string symbol) =>
        symbol.StartsWith("_ZSt", StringComparison.Ordinal) || symbol.StartsWith("_ZNSt", StringComparison.Ordinal)
        || symbol.StartsWith("_ZNKSt", StringComparison.Ordinal);

    /// <summary>pip's torch/version.py beside torch/lib: <c>__version__ = '2.10.0+cu128'</c>.</summary>
    public static string? VersionOf(string folder)
    {
        var file = Path.Combine(folder, "..", "version.py");
        if (!File.Exists(file)) return null;
        var match = VersionLine().Match(File.ReadAllText(file));
        return match.Success ? match.Groups[1].Value : null;
    }

    private static FineTuneException Error(string message) =>
        new(DiagnosticCodes.ExternalLibTorchMismatch, message, ExitCodes.StageFailed);

    [GeneratedRegex(@"^__version__\s*=\s*['""]([^'""]+)['""]", RegexOptions.Multiline)]
    private static partial Regex VersionLine();
}
