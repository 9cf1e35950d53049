import type { Config } from '../../config.ts';
import type { Provider } from './provider.ts';
import { createSimulatedProvider } from './simulated.ts';

export function createProvider(config: Config): Provider {
  switch (config.LLM_PROVIDER) {
    case 'simulated':
      return createSimulatedProvider({ delayMs: config.SIM_DELAY_MS });
    case 'openai':
      throw new Error('LLM_PROVIDER=openai is not available yet');
    default: {
      const unexpected: never = config.LLM_PROVIDER;
      throw new Error(`unknown provider ${String(unexpected)}`);
    }
  }
}
