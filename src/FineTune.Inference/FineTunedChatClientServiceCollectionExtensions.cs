using FineTune.Inference;
using Microsoft.Extensions.AI;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers a <see cref="FineTunedChatClient"/> as the container's <see cref="IChatClient"/>.</summary>
public static class FineTunedChatClientServiceCollectionExtensions
{
    /// <summary>
    /// Registers the model at <paramref name="modelOrPipeline"/> (a model folder, an adapter folder, or a pipeline
    /// file) as <see cref="IChatClient"/>. The model loads when the client is first resolved. Returns the
    /// <see cref="ChatClientBuilder"/>, to add middleware such as logging or caching.
    /// </summary>
    public static ChatClientBuilder AddFineTunedChatClient(this IServiceCollection services, string modelOrPipeline,
        Action<FineTunedChatClientOptions>? configure = null, ServiceLifetime lifetime = ServiceLifetime.Singleton)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentException.ThrowIfNullOrEmpty(modelOrPipeline);
        return services.AddChatClient(_ =>
        {
            var options = new FineTunedChatClientOptions();
            configure?.Invoke(options);
            return FineTunedChatClient.Open(modelOrPipeline, options);
        }, lifetime);
    }
}
