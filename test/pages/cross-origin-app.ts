// A web app on another origin than Sluice, as its users' browsers run it: the typed client's
// browser entry, the signed-in user's token from getToken. test/cross-origin-browser.test.ts
// bundles it with esbuild and serves it from its own origin; the page reports into window.sluiceResult.
import { chatClientTransport, closeChatClient, createChatClient, streamChat, type Transport } from '../../client/browser.ts';

interface Result {
  readonly text?: string;
  readonly last?: string;
  readonly transport?: string;
  readonly history?: number;
  readonly error?: string;
}

declare global {
  interface Window {
    sluiceResult?: Result;
  }
}

const params = new URLSearchParams(location.search);
const token = new URLSearchParams(location.hash.slice(1)).get('token');
const client = createChatClient({
  url: params.get('sluice') ?? '',
  transport: (params.get('transport') ?? 'auto') as Transport,
  wsConnectTimeoutMs: 2000,
  getToken: () => token,
});

async function main(): Promise<Result> {
  let text = '';
  let last = '';
  for await (const event of streamChat(client, { message: 'hello from another origin', sessionId: 'cross-origin' })) {
    if (event.type === 'delta') text += event.delta;
    last = event.type;
  }
  const { messages } = await client.chat.history.query({ sessionId: 'cross-origin' });
  return { text, last, history: messages.length, transport: chatClientTransport(client) };
}

main()
  .then(
    (result) => (window.sluiceResult = result),
    (error: unknown) => (window.sluiceResult = { error: error instanceof Error ? error.message : String(error) }),
  )
  .finally(() => void closeChatClient(client));
