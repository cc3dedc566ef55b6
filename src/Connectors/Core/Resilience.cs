using System.Globalization;
using System.Net;
using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace CloudMem.Connectors.Core;

/// <summary>What one poll saw: finished (with a value) or still pending, and the provider's state name.</summary>
public readonly record struct PollState<T>(bool Done, string State, T? Value)
{
    /// <summary>Finished in <paramref name="state"/> with <paramref name="value"/>.</summary>
    public static PollState<T> Finished(string state, T value) => new(true, state, value);

    /// <summary>Still going (state as the provider names it).</summary>
    public static PollState<T> Pending(string state) => new(false, state, default);
}

/// <summary>
/// Polly v8 pipelines for what we own: our own HTTP calls (transient retry) and polling loops with an overall
/// timeout. The AWS and Azure SDKs keep their own retries: never wrap SDK calls in <see cref="TransientHttp"/>
/// (retries would multiply).
/// </summary>
public static class Resilience
{
    /// <summary>
    /// Retries our own HTTP requests on connection failures, 408, 429 and 5xx, with exponential back-off and jitter.
    /// </summary>
    public static ResiliencePipeline<HttpResponseMessage> TransientHttp(int maxRetries = 4, TimeSpan? baseDelay = null)
        => new ResiliencePipelineBuilder<HttpResponseMessage>()
            .AddRetry(new RetryStrategyOptions<HttpResponseMessage>
            {
                MaxRetryAttempts = maxRetries,
                Delay = baseDelay ?? TimeSpan.FromMilliseconds(500),
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                ShouldHandle = new PredicateBuilder<HttpResponseMessage>()
                    .Handle<HttpRequestException>()
                    .Handle<IOException>()
                    .Handle<TimeoutRejectedException>()
                    .HandleResult(IsTransient),
            })
            .Build();

    /// <summary>True for responses worth retrying.</summary>
    public static bool IsTransient(HttpResponseMessage response)
        => response.StatusCode is HttpStatusCode.RequestTimeout or HttpStatusCode.TooManyRequests || (int)response.StatusCode >= 500;

    /// <summary>
    /// Calls <paramref name="check"/> every <paramref name="interval"/> until it reports done, and returns its value.
    /// </summary>
    /// <exception cref="CaptureTimeoutException">not done within <paramref name="timeout"/>: "<paramref name="what"/> did
    /// not finish within T (last state: S)".</exception>
    /// <remarks>Exceptions thrown by <paramref name="check"/> end the loop (SDK calls retry on their own).</remarks>
    public static async Task<T> PollUntilAsync<T>(
        string what,
        Func<CancellationToken, ValueTask<PollState<T>>> check,
        TimeSpan interval,
        TimeSpan timeout,
        CancellationToken cancellationToken = default)
    {
        string? lastState = null;
        ResiliencePipeline<PollState<T>> pipeline = new ResiliencePipelineBuilder<PollState<T>>()
            .AddTimeout(timeout)
            .AddRetry(new RetryStrategyOptions<PollState<T>>
            {
                MaxRetryAttempts = int.MaxValue,
                Delay = interval,
                BackoffType = DelayBackoffType.Constant,
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is null && !args.Outcome.Result.Done),
            })
            .Build();
        try
        {
            PollState<T> final = await pipeline.ExecuteAsync(async token =>
            {
                PollState<T> state = await check(token).ConfigureAwait(false);
                lastState = state.State;
                return state;
            }, cancellationToken).ConfigureAwait(false);
            return final.Value!;
        }
        catch (TimeoutRejectedException)
        {
            throw new CaptureTimeoutException(what, timeout, lastState);
        }
    }

    /// <summary>A duration for messages: "90 s", "5 min", "2 h 5 min", "250 ms".</summary>
    public static string Describe(TimeSpan span)
    {
        if (span < TimeSpan.FromSeconds(1))
        {
            return string.Create(CultureInfo.InvariantCulture, $"{span.TotalMilliseconds:0} ms");
        }
        if (span < TimeSpan.FromMinutes(2))
        {
            return string.Create(CultureInfo.InvariantCulture, $"{span.TotalSeconds:0.#} s");
        }
        if (span < TimeSpan.FromHours(2))
        {
            return string.Create(CultureInfo.InvariantCulture, $"{span.TotalMinutes:0.#} min");
        }
        return string.Create(CultureInfo.InvariantCulture, $"{(int)span.TotalHours} h {span.Minutes} min");
    }
}
