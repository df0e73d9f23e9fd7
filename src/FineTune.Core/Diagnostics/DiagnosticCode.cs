namespace FineTune.Core.Diagnostics;

/// <summary>One entry of <see cref="DiagnosticCodes.All"/>: the code, the constant's name and its meaning.</summary>
internal sealed record DiagnosticCode(string Code, string Name, string Meaning);
