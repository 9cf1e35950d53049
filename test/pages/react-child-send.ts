// A chat whose composer is its own component: on "New chat" the app switches the session and the
// composer sends the drafted first message from its own effect (a child's effect runs before its
// parent's, so before useChatStream has seen the new session).
import { createElement as h, useEffect, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { createChatClient } from '../../client/browser.ts';
import { useChatStream } from '../../client/react.ts';

const params = new URLSearchParams(location.search);
const client = createChatClient({ url: params.get('sluice') ?? '', transport: 'ws' });

function Composer({ sessionId, draft, send }: { sessionId: string; draft: string | undefined; send: (m: string) => void }) {
  useEffect(() => {
    if (draft !== undefined) send(draft);
  }, [sessionId, draft, send]);
  return null;
}

function Chat({ sessionId, draft }: { sessionId: string; draft: string | undefined }) {
  const { messages, status, send } = useChatStream(client, sessionId);
  return h(
    'main',
    null,
    h('p', { id: 'status' }, status),
    h(Composer, { sessionId, draft, send }),
    h(
      'ul',
      { id: 'messages' },
      messages.map((m, i) => h('li', { key: i, 'data-role': m.role, 'data-status': m.status }, m.content)),
    ),
  );
}

function App() {
  const [chat, setChat] = useState<{ sessionId: string; draft: string | undefined }>({ sessionId: 'first', draft: undefined });
  return h('div', null, h('button', { id: 'new', onClick: () => setChat({ sessionId: 'second', draft: 'hello there' }) }, 'New chat'), h(Chat, chat));
}

createRoot(document.getElementById('root')!).render(h(App));
