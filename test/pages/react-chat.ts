// A React app on another origin than Sluice, built on sluice-client's useChatStream: the
// session's history, each reply as it streams, Send and Stop. test/cross-origin-browser.test.ts
// bundles it with esbuild (React's development build, StrictMode) and serves it from its own origin.
import { createElement as h, StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { createChatClient } from '../../client/browser.ts';
import { useChatStream } from '../../client/react.ts';

const params = new URLSearchParams(location.search);
const token = new URLSearchParams(location.hash.slice(1)).get('token');
// One client for the app, made once: the hook takes it.
const client = createChatClient({ url: params.get('sluice') ?? '', getToken: () => token });

function Chat({ sessionId }: { sessionId: string }) {
  const { messages, status, error, send, stop } = useChatStream(client, sessionId);
  const [input, setInput] = useState('');
  return h(
    'main',
    null,
    h('p', { id: 'status' }, status),
    error ? h('p', { id: 'error' }, error.message) : null,
    h(
      'ul',
      { id: 'messages' },
      messages.map((m, i) => h('li', { key: i, 'data-role': m.role, 'data-status': m.status }, m.content)),
    ),
    h('input', { id: 'message', value: input, onChange: (e: { target: { value: string } }) => setInput(e.target.value) }),
    h('button', { id: 'send', disabled: status === 'streaming', onClick: () => (send(input), setInput('')) }, 'Send'),
    h('button', { id: 'stop', disabled: status !== 'streaming', onClick: stop }, 'Stop'),
  );
}

createRoot(document.getElementById('root')!).render(h(StrictMode, null, h(Chat, { sessionId: params.get('session') ?? 'react' })));
