using FineTune.Cli;

return await CliApplication.RunAsync(args);
