// A "new chat" button that opens a session and sends its first message at once (while the hook
// still loads the session's history). Every render's messages are recorded in window.loadRenders.
import { createElement as h, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { createChatClient } from '../../client/browser.ts';
import { useChatStream } from '../../client/react.ts';

declare global {
  interface Window {
    loadRenders: Array<{ sessionId: string; status: string; messages: Array<{ role?: string; status?: string; content?: string }> }>;
  }
}
window.loadRenders = [];
const params = new URLSearchParams(location.search);
const client = createChatClient({ url: params.get('sluice') ?? '', transport: 'ws' });

function Chat({ sessionId, first }: { sessionId: string; first: string }) {
  const { messages, status, send } = useChatStream(client, sessionId);
  useEffect(() => send(first), [send, first]);
  window.loadRenders.push({ sessionId, status, messages: messages.map((m) => ({ role: m.role, status: m.status, content: m.content })) });
  return h(
    'main',
    null,
    h('p', { id: 'status' }, status),
    h(
      'ul',
      { id: 'messages' },
      messages.map((m, i) => h('li', { key: i, 'data-role': m.role, 'data-status': m.status }, m.content)),
    ),
  );
}

function App() {
  const [open, setOpen] = useState(false);
  return h(
    'div',
    null,
    h('button', { id: 'new', onClick: () => setOpen(true) }, 'New chat'),
    open ? h(Chat, { sessionId: 'fresh', first: 'hello there' }) : null,
  );
}

createRoot(document.getElementById('root')!).render(h(App));
