namespace FineTune.Bench;

/// <summary>One benchmark: prints its figures (and a JSON line with them) and returns an exit code.</summary>
internal interface IBenchmark
{
    string Name { get; }
    string Description { get; }
    int Run(string[] args);
}
