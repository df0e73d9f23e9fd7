using FineTune.Core;
using System.CommandLine;
using System.Text.Json;
using FineTune.Core.Diagnostics;
using FineTune.Core.Fetching;
using FineTune.Torch.Training;

namespace FineTune.Cli.Commands;

/// <summary><c>info</c>: what this machine offers (device, libtorch, threads) and where the caches are.</summary>
internal static class InfoCommand
{
    public static Command Create(CliConsole console)
    {
        var command = new Command("info",
            "Show the tool version, the compute device libtorch sees, the native allocator, and the cache folders.");
        var json = new Option<bool>("--json") { Description = "Write one JSON document." };
        command.Options.Add(json);
        command.SetAction(parse =>
        {
            var environment = ComputeEnvironmentProvider.Resolve("auto");
            var info = new
            {
                version = 1,
                tool = CliApplication.ToolVersion,
                device = environment.Device,
                libtorch = environment.LibTorchVersion,
                libtorch_folder = FineTune.Torch.Native.ExternalLibTorch.LoadedFolder(),
                threads = environment.Threads,
                allocator = NativeAllocator.ThisProcess(),
                bfloat16_compute = CpuFeatures.ThisCpuHasBfloat16Compute(),
                download_cache = DownloadCache.DefaultRoot(),
            };
            console.Out.WriteLine(parse.GetValue(json)
                ? JsonSerializer.Serialize(info, JsonText.Indented)
                : $"dotnet-finetune {info.tool}\ndevice: {info.device} ({info.threads} threads)\nlibtorch: " +
                    $"{info.libtorch} ({info.libtorch_folder ?? "folder unknown"})\n" +
                    $"allocator: {info.allocator}; bfloat16 compute: " +
                    $"{(info.bfloat16_compute is { } bf16 ? bf16 ? "yes" : "no" : "unknown")}\n" +
                    $"download cache: {info.download_cache}");
            return ExitCodes.Ok;
        });
        return command;
    }
}
