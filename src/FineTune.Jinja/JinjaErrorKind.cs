namespace FineTune.Jinja;

/// <summary>Which kind of failure a <see cref="JinjaException"/> reports, so callers can tell the template author's own
/// message apart.</summary>
public enum JinjaErrorKind
{
    /// <summary>The template text is not valid Jinja.</summary>
    Syntax,

    /// <summary>The template called <c>raise_exception(message)</c>; the message is the template author's,
    /// verbatim.</summary>
    Raised,

    /// <summary>Rendering failed (an undefined value used, a type error, an unknown filter or test).</summary>
    Runtime,
}
