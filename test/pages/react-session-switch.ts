// A React app whose user moves to another conversation while a reply streams (a sidebar of chats):
// the same useChatStream, with its sessionId changed. Every render's messages are recorded, by the
// session they were rendered for, in window.renders.
import { createElement as h, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { createChatClient } from '../../client/browser.ts';
import { useChatStream } from '../../client/react.ts';

declare global {
  interface Window {
    renders: Array<{ sessionId: string; status: string; messages: Array<{ role?: string; status?: string }> }>;
  }
}
window.renders = [];
const params = new URLSearchParams(location.search);
const client = createChatClient({ url: params.get('sluice') ?? '', transport: 'ws' });

function Chat({ sessionId }: { sessionId: string }) {
  const { messages, status, send } = useChatStream(client, sessionId);
  window.renders.push({ sessionId, status, messages: messages.map((m) => ({ role: m.role, status: m.status })) });
  return h(
    'main',
    null,
    h('p', { id: 'status' }, status),
    h(
      'ul',
      { id: 'messages' },
      messages.map((m, i) => h('li', { key: i, 'data-role': m.role, 'data-status': m.status }, m.content)),
    ),
    h('button', { id: 'send', onClick: () => send('a long story') }, 'Send'),
  );
}

function App() {
  const [sessionId, setSessionId] = useState('first');
  return h('div', null, h('button', { id: 'switch', onClick: () => setSessionId('second') }, 'Other chat'), h(Chat, { sessionId }));
}

createRoot(document.getElementById('root')!).render(h(App));
