using FineTune.Cli;

AllocatorRelaunch.IfNeeded(args);
return await CliApplication.RunAsync(args);
