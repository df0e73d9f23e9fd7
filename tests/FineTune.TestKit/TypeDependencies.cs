using System.Reflection;
using System.Reflection.Emit;

namespace FineTune.TestKit;

/// <summary>
/// The types each type of an assembly uses: in its signatures (base type, interfaces, fields, properties, methods)
/// and in its method bodies (every type, method or field token the IL names). Enough to see namespace dependencies.
/// </summary>
internal static class TypeDependencies
{
    private const BindingFlags Declared = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;

    /// <summary>Namespace -> namespaces its types use, within <paramref name="assembly"/> only.</summary>
    public static Dictionary<string, HashSet<string>> NamespaceGraph(Assembly assembly)
    {
        var graph = new Dictionary<string, HashSet<string>>(StringComparer.Ordinal);
        foreach (var type in assembly.GetTypes())
        {
            var from = NamespaceOf(type);
            if (from is null) continue;
            var edges = graph.TryGetValue(from, out var set) ? set : graph[from] = new HashSet<string>(StringComparer.Ordinal);
            foreach (var used in UsedTypes(type))
                if (used.Assembly == assembly && NamespaceOf(used) is { } to && to != from) edges.Add(to);
        }
        return graph;
    }

    private static string? NamespaceOf(Type type)
    {
        while (type.DeclaringType is { } outer) type = outer;
        return type.Namespace;
    }

    private static IEnumerable<Type> UsedTypes(Type type)
    {
        var found = new HashSet<Type>();
        void Add(Type? t)
        {
            if (t is null || t.IsGenericParameter || !found.Add(t)) return;
            if (t.HasElementType) Add(t.GetElementType());
            if (t.IsGenericType) foreach (var argument in t.GetGenericArguments()) Add(argument);
        }
        Add(type.BaseType);
        foreach (var contract in type.GetInterfaces()) Add(contract);
        foreach (var field in type.GetFields(Declared)) Add(field.FieldType);
        foreach (var property in type.GetProperties(Declared)) Add(property.PropertyType);
        foreach (var method in type.GetMethods(Declared).Cast<MethodBase>().Concat(type.GetConstructors(Declared)))
        {
            if (method is MethodInfo info) Add(info.ReturnType);
            foreach (var parameter in method.GetParameters()) Add(parameter.ParameterType);
            foreach (var used in TypesInBody(method)) Add(used);
        }
        return found;
    }

    private static IEnumerable<Type> TypesInBody(MethodBase method)
    {
        var il = method.GetMethodBody()?.GetILAsByteArray();
        if (il is null) yield break;
        var module = method.Module;
        var typeArguments = method.DeclaringType?.IsGenericType == true ? method.DeclaringType.GetGenericArguments() : null;
        var methodArguments = method.IsGenericMethod ? method.GetGenericArguments() : null;
        var position = 0;
        while (position < il.Length)
        {
            var opCode = il[position] == 0xFE ? TwoByte[il[position + 1]] : OneByte[il[position]];
            position += opCode.Size;
            if (opCode.OperandType is OperandType.InlineType or OperandType.InlineMethod or OperandType.InlineField or OperandType.InlineTok)
            {
                var token = BitConverter.ToInt32(il, position);
                MemberInfo? member = null;
                try { member = module.ResolveMember(token, typeArguments, methodArguments); }
                catch (ArgumentException) { }
                if (member is Type used) yield return used;
                else if (member?.DeclaringType is { } owner) yield return owner;
            }
            position += OperandSize(opCode.OperandType, il, position);
        }
    }

    private static int OperandSize(OperandType operand, byte[] il, int position) => operand switch
    {
        OperandType.InlineNone => 0,
        OperandType.ShortInlineBrTarget or OperandType.ShortInlineI or OperandType.ShortInlineVar => 1,
        OperandType.InlineVar => 2,
        OperandType.InlineI8 or OperandType.InlineR => 8,
        OperandType.InlineSwitch => 4 + 4 * BitConverter.ToInt32(il, position),
        _ => 4,
    };

    private static readonly OpCode[] OneByte = new OpCode[256];
    private static readonly OpCode[] TwoByte = new OpCode[256];

    static TypeDependencies()
    {
        foreach (var field in typeof(OpCodes).GetFields(BindingFlags.Public | BindingFlags.Static))
        {
            var opCode = (OpCode)field.GetValue(null)!;
            var value = (ushort)opCode.Value;
            if (opCode.Size == 1) OneByte[value] = opCode;
            else TwoByte[value & 0xFF] = opCode;
        }
    }

    /// <summary>One cycle of <paramref name="graph"/> as the list of its nodes, or null when there is none.</summary>
    public static List<string>? FindCycle(IReadOnlyDictionary<string, HashSet<string>> graph)
    {
        var state = new Dictionary<string, int>(StringComparer.Ordinal); // 1: on the current path, 2: done
        var path = new List<string>();
        List<string>? Visit(string node)
        {
            state[node] = 1;
            path.Add(node);
            foreach (var next in graph.TryGetValue(node, out var edges) ? edges.Order(StringComparer.Ordinal) : Enumerable.Empty<string>())
            {
                if (state.GetValueOrDefault(next) == 1) return [.. path[path.IndexOf(next)..], next];
                if (state.GetValueOrDefault(next) == 0 && Visit(next) is { } cycle) return cycle;
            }
            path.RemoveAt(path.Count - 1);
            state[node] = 2;
            return null;
        }
        foreach (var node in graph.Keys.Order(StringComparer.Ordinal))
            if (state.GetValueOrDefault(node) == 0 && Visit(node) is { } cycle) return cycle;
        return null;
    }

    /// <summary>"A -> B, C" for each namespace of <paramref name="assembly"/> that its own dependencies lead back to.</summary>
    public static List<string> NamespaceCycles(Assembly assembly)
    {
        var graph = NamespaceGraph(assembly);
        HashSet<string> Reachable(string from)
        {
            var reached = new HashSet<string>(StringComparer.Ordinal);
            var pending = new Stack<string>(graph.GetValueOrDefault(from) ?? []);
            while (pending.TryPop(out var next))
                if (reached.Add(next) && graph.TryGetValue(next, out var edges)) foreach (var edge in edges) pending.Push(edge);
            return reached;
        }
        return [.. graph.Keys.Order(StringComparer.Ordinal)
            .Where(ns => Reachable(ns).Contains(ns))
            .Select(ns => ns + " -> " + string.Join(", ", graph[ns].Where(next => Reachable(next).Contains(ns)).Order(StringComparer.Ordinal)))];
    }
}
