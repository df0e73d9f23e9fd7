using System.Diagnostics;
using System.Text;
using FineTune.Core.Diagnostics;
using FineTune.TestKit;
using FineTune.Torch.Native;

namespace FineTune.Torch.Tests.Native;

/// <summary>
/// FINETUNE_LIBTORCH against a pip-like folder (<c>site-packages/torch/lib</c> plus <c>torch/version.py</c>) made of
/// this build's own CPU libtorch: it passes the symbol check and is the libtorch the tool then runs on; a copy with a
/// symbol renamed away is one FT1105 error naming the symbol and both versions.
/// </summary>
public class ExternalLibTorchTests
{
    private static string Bundled => Path.GetDirectoryName(ExternalLibTorch.ShimPath())!;

    private static readonly string[] Libraries = ["libc10.so", "libtorch_cpu.so", "libtorch.so",
        "libgomp-98b21ff3.so.1", "libtorch_global_deps.so"];

    /// <summary>The pip layout, its files linked to this build's; libc10.so copied when it is to be edited.</summary>
    private static string PipLike(TempFolder temp, Func<byte[], byte[]>? editC10 = null, string? from = null)
    {
        var source = from ?? Bundled;
        var lib = temp.Folder("site-packages/torch/lib");
        temp.Write("site-packages/torch/version.py", "__version__ = '2.10.0+cpu'\n");
        foreach (var name in Libraries.Where(n => File.Exists(Path.Combine(source, n))))
        {
            if (name == "libc10.so" && editC10 is not null)
                File.WriteAllBytes(Path.Combine(lib, name),
                    editC10(File.ReadAllBytes(Path.Combine(source, name))));
            else File.CreateSymbolicLink(Path.Combine(lib, name), Path.Combine(source, name));
        }
        return lib;
    }

    [Fact]
    public void The_dynamic_symbol_table_is_what_the_linker_sees()
    {
        var shim = ElfDynamicSymbols.Read(ExternalLibTorch.ShimPath())!;
        // readelf -d: the shim needs libtorch, libc10, libtorch_cpu and the C/C++ runtime.
        Assert.Equal(["libtorch.so", "libc10.so", "libtorch_cpu.so"], shim.Needed.Take(3));
        Assert.Contains("THSTensor_data", shim.Defined);
        Assert.DoesNotContain("THSTensor_data", shim.Required);
        var c10 = ElfDynamicSymbols.Read(Path.Combine(Bundled, "libc10.so"))!;
        Assert.NotEmpty(shim.Required.Intersect(c10.Defined));
        Assert.Null(ElfDynamicSymbols.Read(typeof(ExternalLibTorch).Assembly.Location));
    }

    [Fact]
    public void A_pip_like_copy_of_this_libtorch_passes_the_check_and_gives_its_version()
    {
        using var temp = new TempFolder();
        var lib = PipLike(temp);
        ExternalLibTorch.Check(lib, ExternalLibTorch.ShimPath());
        Assert.Equal("2.10.0+cpu", ExternalLibTorch.VersionOf(lib));
    }

    [Fact]
    public void A_symbol_the_shim_imports_that_the_folder_lacks_is_FT1105()
    {
        var symbol = MissingSymbol();
        using var temp = new TempFolder();
        var lib = PipLike(temp, bytes => Rename(bytes, symbol));
        var error = Assert.Throws<FineTuneException>(() => ExternalLibTorch.Check(lib, ExternalLibTorch.ShimPath()));
        Assert.Contains(DiagnosticCodes.ExternalLibTorchMismatch, error.Message);
        Assert.Contains("libtorch 2.10.0+cpu", error.Message);
        Assert.Contains($"built for libtorch {ExternalLibTorch.ShimLibTorchVersion}", error.Message);
        Assert.Contains(symbol, error.Message);
    }

    [Fact]
    public void A_folder_without_libtorch_is_FT1105()
    {
        using var temp = new TempFolder();
        var error = Assert.Throws<FineTuneException>(() =>
            ExternalLibTorch.Check(temp.Folder("lib"), ExternalLibTorch.ShimPath()));
        Assert.Contains("is not a libtorch folder", error.Message);
    }

    [Fact]
    public void The_shim_version_is_the_libtorch_package_this_build_restores()
    {
        var props = File.ReadAllText(Path.Combine(Repository.Root, "Directory.Packages.props"));
        Assert.Contains($"<PackageVersion Include=\"libtorch-cpu-linux-x64\" Version=\"" +
            $"{ExternalLibTorch.ShimLibTorchVersion}\" />", props);
    }

    [Fact]
    public void The_tool_runs_on_the_folder_it_is_given_and_refuses_a_broken_one()
    {
        var tool = Path.Combine(Repository.Root, "src", "FineTune.Cli", "bin", "Release", "net10.0",
            "dotnet-finetune.dll");
        if (!File.Exists(tool)) return; // the CLI is built with the solution; a lone test build has no tool
        // The tool's own libtorch files, under another path: TorchSharp's own load of them is then the same library.
        var native = Path.Combine(Path.GetDirectoryName(tool)!, "runtimes", "linux-x64", "native");
        using var temp = new TempFolder();
        var good = PipLike(temp, from: native);
        var (code, output) = Run(tool, good);
        Assert.True(code == 0, output);
        Assert.Contains($"libtorch: 2.10.0", output);
        Assert.Contains($"({good})", output);

        using var broken = new TempFolder();
        var symbol = MissingSymbol();
        (code, output) = Run(tool, PipLike(broken, bytes => Rename(bytes, symbol), from: native));
        Assert.Equal(ExitCodes.StageFailed, code);
        Assert.Contains("error FT1105", output);
        Assert.Contains(symbol, output);

        // Another libtorch file while the tool bundles its own: TorchSharp would load both.
        using var other = new TempFolder();
        (code, output) = Run(tool, PipLike(other));
        Assert.Equal(ExitCodes.StageFailed, code);
        Assert.Contains("bundles its own libtorch", output);
    }

    private static (int Code, string Output) Run(string tool, string libtorch)
    {
        var info = new ProcessStartInfo(Environment.GetEnvironmentVariable("DOTNET_HOST_PATH") ?? "dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true,
        };
        info.ArgumentList.Add(tool);
        info.ArgumentList.Add("info");
        info.Environment[ExternalLibTorch.Variable] = libtorch;
        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, output.Result + error);
    }

    /// <summary>A symbol the shim imports from libc10.so and nothing else of libtorch defines.</summary>
    private static string MissingSymbol()
    {
        var shim = ElfDynamicSymbols.Read(ExternalLibTorch.ShimPath())!;
        var c10 = ElfDynamicSymbols.Read(Path.Combine(Bundled, "libc10.so"))!;
        var cpu = ElfDynamicSymbols.Read(Path.Combine(Bundled, "libtorch_cpu.so"))!;
        return shim.Required.Where(s => c10.Defined.Contains(s) && !cpu.Defined.Contains(s))
            .Order(StringComparer.Ordinal).First();
    }

    /// <summary>Renames a symbol in the string table: its last letter changed, so the library no longer exports
    /// it.</summary>
    private static byte[] Rename(byte[] library, string symbol)
    {
        var name = Encoding.ASCII.GetBytes("\0" + symbol + "\0");
        var at = library.AsSpan().IndexOf(name);
        Assert.True(at >= 0, $"{symbol} not found in libc10.so");
        library[at + symbol.Length] ^= 0x20;
        return library;
    }
}
