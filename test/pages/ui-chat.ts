// A chat page built the way an AI SDK user builds one: React, `useChat` from `@ai-sdk/react` with
// `resume: true`, and Sluice as the backend. test/ui-chat-browser.test.ts bundles it with esbuild
// and drives it in Chromium. React's development build and StrictMode, as in a dev server (effects
// run twice: useChat resumes twice on mount).
import { useChat } from '@ai-sdk/react';
import { DefaultChatTransport, type UIMessage } from 'ai';
import { createElement as h, StrictMode, useState } from 'react';
import { createRoot } from 'react-dom/client';
import { uiChatFetch, type UIChatMetadata } from '../../client/browser.ts';
import type { SessionHistory } from '../../shared/messages.ts';

type Message = UIMessage<UIChatMetadata>;

const chatId = new URLSearchParams(location.search).get('chat') ?? 'ui-page';
// The client setup Sluice needs: its endpoint, and a fetch that makes stop() stop the server's reply.
const transport = new DefaultChatTransport<Message>({ api: '/v1/ui/chat', fetch: uiChatFetch() });

const textOf = (message: Message): string => message.parts.map((part) => (part.type === 'text' ? part.text : '')).join('');

function Chat({ initial }: { initial: Message[] }) {
  const { messages, sendMessage, stop, status, error } = useChat<Message>({ id: chatId, messages: initial, transport, resume: true });
  const [input, setInput] = useState('');
  const busy = status === 'submitted' || status === 'streaming';
  return h(
    'main',
    null,
    h(
      'ul',
      { id: 'messages' },
      messages.map((message) => h('li', { key: message.id, 'data-role': message.role, 'data-status': message.metadata?.status ?? '' }, textOf(message))),
    ),
    h('p', { id: 'status' }, status),
    h('p', { id: 'error' }, error?.message ?? ''),
    h(
      'form',
      {
        onSubmit: (event: { preventDefault(): void }) => {
          event.preventDefault();
          void sendMessage({ text: input });
          setInput('');
        },
      },
      h('input', { id: 'message', value: input, onChange: (event: { target: { value: string } }) => setInput(event.target.value) }),
      h('button', { id: 'send', type: 'submit', disabled: busy || input.length === 0 }, 'Send'),
      h('button', { id: 'stop', type: 'button', disabled: !busy, onClick: () => void stop() }, 'Stop'),
    ),
  );
}

// The conversation so far comes from Sluice's history; a reply still running is resumed by useChat.
const history = (await (await fetch(`/v1/sessions/${encodeURIComponent(chatId)}/messages`)).json()) as SessionHistory;
const initial: Message[] = history.messages.map((message, i) => ({
  id: `history-${i}`,
  role: message.role,
  parts: [{ type: 'text', text: message.content }],
  metadata: { status: message.status },
}));
createRoot(document.getElementById('root')!).render(h(StrictMode, null, h(Chat, { initial })));
