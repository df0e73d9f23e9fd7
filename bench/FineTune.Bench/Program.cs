using System.Reflection;
using FineTune.Bench;

// Each benchmark is a class implementing IBenchmark in this project; found by reflection so adding one touches one file.
var benchmarks = Assembly.GetExecutingAssembly().GetTypes()
    .Where(t => typeof(IBenchmark).IsAssignableFrom(t) && t is { IsAbstract: false, IsInterface: false })
    .Select(t => (IBenchmark)Activator.CreateInstance(t)!)
    .OrderBy(b => b.Name, StringComparer.Ordinal)
    .ToList();

var chosen = args.Length > 0 ? benchmarks.FirstOrDefault(b => b.Name == args[0]) : null;
if (chosen is null)
{
    Console.Error.WriteLine("usage: dotnet run -c Release --project bench/FineTune.Bench -- NAME [args]");
    foreach (var b in benchmarks) Console.Error.WriteLine($"  {b.Name,-24} {b.Description}");
    return args.Length == 0 ? 0 : 2;
}
return chosen.Run(args[1..]);
