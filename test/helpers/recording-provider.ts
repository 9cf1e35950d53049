import { asDeltas, type Provider, type ProviderMessage, type ProviderRequest } from '../../server/core/providers/provider.ts';

export interface ProviderCall {
  readonly messages: readonly ProviderMessage[];
  aborted: boolean;
  /** The provider's generator has returned (normally or by abort): nothing of it is running. */
  settled: boolean;
  /** Deltas yielded so far. */
  yielded: number;
}

/** Wraps a real provider and records what each call received and how it ended. */
export function recordingProvider(inner: Provider): { provider: Provider; calls: ProviderCall[] } {
  const calls: ProviderCall[] = [];
  const provider: Provider = {
    name: `recording(${inner.name})`,
    async *stream(request: ProviderRequest) {
      const call: ProviderCall = { messages: [...request.messages], aborted: false, settled: false, yielded: 0 };
      calls.push(call);
      const onAbort = (): void => {
        call.aborted = true;
      };
      request.signal.addEventListener('abort', onAbort, { once: true });
      try {
        for await (const item of inner.stream(request)) {
          call.yielded += asDeltas(item).length;
          yield item;
        }
      } finally {
        request.signal.removeEventListener('abort', onAbort);
        call.settled = true;
      }
    },
  };
  return { provider, calls };
}
