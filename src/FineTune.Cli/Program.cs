using FineTune.Cli;

AllocatorRelaunch.IfAsked();
return await CliApplication.RunAsync(args);
