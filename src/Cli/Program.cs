using CloudMem.Cli;

return CliApp.Run(args);
