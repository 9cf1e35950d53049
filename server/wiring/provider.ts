import type { Logger } from 'pino';
import type { Config } from '../config.ts';
import { createOpenAIProvider } from '../core/providers/openai.ts';
import type { Provider } from '../core/providers/provider.ts';
import { createSimulatedProvider, SIMULATED_MODEL_ID } from '../core/providers/simulated.ts';

/** The provider the configuration names, built from the settings that concern it. */
export function providerFrom(config: Config, logger?: Logger): Provider {
  switch (config.LLM_PROVIDER) {
    case 'simulated':
      return createSimulatedProvider({
        delayMs: config.SIM_DELAY_MS,
        firstDelayMs: config.SIM_FIRST_TOKEN_MS,
        tokenizer: config.SIM_TOKENIZER,
        usage: config.SIM_USAGE,
      });
    case 'openai':
      // The config schema has checked that both are present for this provider.
      if (!config.OPENAI_BASE_URL || !config.LLM_MODEL) throw new Error('LLM_PROVIDER=openai needs OPENAI_BASE_URL and LLM_MODEL');
      return createOpenAIProvider({
        baseURL: config.OPENAI_BASE_URL,
        apiKey: config.OPENAI_API_KEY,
        model: config.LLM_MODEL,
        temperature: config.LLM_TEMPERATURE,
        maxTokens: config.LLM_MAX_TOKENS,
        systemPrompt: config.LLM_SYSTEM_PROMPT,
        includeUsage: config.UPSTREAM_INCLUDE_USAGE,
        firstTokenTimeoutMs: config.UPSTREAM_FIRST_TOKEN_TIMEOUT_MS,
        stallTimeoutMs: config.UPSTREAM_STALL_TIMEOUT_MS,
        retries: config.UPSTREAM_RETRIES,
        retryBaseMs: config.UPSTREAM_RETRY_BASE_MS,
        retryMaxDelayMs: config.UPSTREAM_RETRY_MAX_DELAY_MS,
        maxConnections: config.UPSTREAM_MAX_CONNECTIONS,
        keepAliveMs: config.UPSTREAM_KEEP_ALIVE_MS,
        logger: logger?.child({ provider: 'openai' }),
      });
    default: {
      const unexpected: never = config.LLM_PROVIDER;
      throw new Error(`unknown provider ${String(unexpected)}`);
    }
  }
}

/** The model id Sluice serves on `GET /v1/models`: the upstream's model, or the simulator's. */
export function servedModelId(config: Config): string {
  switch (config.LLM_PROVIDER) {
    case 'simulated':
      return SIMULATED_MODEL_ID;
    case 'openai':
      return config.LLM_MODEL ?? SIMULATED_MODEL_ID;
    default: {
      const unexpected: never = config.LLM_PROVIDER;
      throw new Error(`unknown provider ${String(unexpected)}`);
    }
  }
}
