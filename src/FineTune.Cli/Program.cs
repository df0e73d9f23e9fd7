using FineTune.Cli;

AllocatorRelaunch.IfUseful();
return await CliApplication.RunAsync(args);
