// A chat whose history could not be loaded (the server was restarting as the page opened): the
// user sends a message once it is back. Every render is recorded in window.errorRenders.
import { createElement as h } from 'react';
import { createRoot } from 'react-dom/client';
import { createChatClient } from '../../client/browser.ts';
import { useChatStream } from '../../client/react.ts';

declare global {
  interface Window {
    errorRenders: Array<{ status: string; error?: string; messages: number }>;
  }
}
window.errorRenders = [];
const params = new URLSearchParams(location.search);
const client = createChatClient({ url: params.get('sluice') ?? '', transport: 'sse' });

function Chat() {
  const { messages, status, error, send } = useChatStream(client, 'blip');
  window.errorRenders.push({ status, error: error?.message, messages: messages.length });
  return h(
    'main',
    null,
    h('p', { id: 'status' }, status),
    h('button', { id: 'send', onClick: () => send('sent after the blip') }, 'Send'),
    h(
      'ul',
      { id: 'messages' },
      messages.map((m, i) => h('li', { key: i, 'data-role': m.role }, m.content)),
    ),
  );
}

createRoot(document.getElementById('root')!).render(h(Chat));
