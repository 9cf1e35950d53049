/**
 * The browser chat page served at `/`: the typed client over WebSocket, falling back to SSE, with
 * the session's history, a streaming reply, Stop, and the transport and reconnects shown. When the
 * server wants a credential, the page asks for a token (or takes one from `#token=...`).
 * Bundled by esbuild (server/transport/http/web-assets.ts); no framework.
 */
import { createChatClient, formatReplyStats, ReplyTimer, streamChat, type ChatMessage, type Transport } from '../browser.ts';
import { EventSourceParserStream } from 'eventsource-parser/stream';
import { SESSION_ID_PATTERN } from '../../shared/session-id.ts';
import type { UIChatChunk } from '../../shared/ui-chat.ts';

type Status = ChatMessage['status'] | 'streaming';

const byId = <T extends HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
};

const ui = {
  transport: byId<HTMLSpanElement>('transport'),
  connection: byId<HTMLSpanElement>('connection'),
  session: byId<HTMLElement>('session'),
  newChat: byId<HTMLButtonElement>('new-chat'),
  messages: byId<HTMLOListElement>('messages'),
  empty: byId<HTMLParagraphElement>('empty'),
  alert: byId<HTMLParagraphElement>('alert'),
  form: byId<HTMLFormElement>('composer'),
  input: byId<HTMLTextAreaElement>('message'),
  send: byId<HTMLButtonElement>('send'),
  stop: byId<HTMLButtonElement>('stop'),
  stats: byId<HTMLParagraphElement>('stats'),
  signin: byId<HTMLFormElement>('signin'),
  signinReason: byId<HTMLLabelElement>('signin-reason'),
  token: byId<HTMLInputElement>('token'),
};

// The credential, when the server wants one: kept in this tab only (sessionStorage), read by the
// client at each connection and request. A link may carry it in the fragment (`#token=...`),
// which browsers never send to the server; it is taken out of the address bar at once.
const TOKEN_KEY = 'sluice.token';
const currentToken = (): string | undefined => sessionStorage.getItem(TOKEN_KEY) ?? undefined;
/** True when the fragment brought a credential that the tab now uses instead of the one it had. */
function takeTokenFromFragment(): boolean {
  const fragment = new URLSearchParams(location.hash.slice(1));
  const token = fragment.get('token');
  if (token === null) return false;
  // Out of the address bar (and of this history entry) first, whatever is decided.
  fragment.delete('token');
  const rest = fragment.toString();
  history.replaceState(null, '', `${location.pathname}${location.search}${rest ? `#${rest}` : ''}`);
  const held = currentToken();
  if (!token || token === held) return false;
  // A link must not swap the credential of a tab signed in already without asking: the user's
  // messages would go to whoever made the link, with nothing on screen to say so.
  if (held !== undefined && !confirm('This link signs this tab in with another key or token: what you write from now on goes to that account. Use it?'))
    return false;
  sessionStorage.setItem(TOKEN_KEY, token);
  return held !== undefined;
}
takeTokenFromFragment();
// A link to this page with only another fragment does not load it again: the same, then a fresh
// start with the new credential.
window.addEventListener('hashchange', () => {
  if (takeTokenFromFragment() || (currentToken() !== undefined && !ui.signin.hidden)) location.reload();
});

const isUnauthorized = (error: unknown): boolean => (error as { data?: { code?: string } | null }).data?.code === 'UNAUTHORIZED';

const newSessionId = (): string => `web-${crypto.randomUUID().slice(0, 8)}`;

/** `?session=` when valid, else the last one used in this browser, else a new one; kept in the URL. */
function pickSession(params: URLSearchParams): string {
  const fromUrl = params.get('session');
  const stored = localStorage.getItem('sluice.session');
  const id = fromUrl && SESSION_ID_PATTERN.test(fromUrl) ? fromUrl : stored && SESSION_ID_PATTERN.test(stored) ? stored : newSessionId();
  localStorage.setItem('sluice.session', id);
  params.set('session', id);
  history.replaceState(null, '', `?${params.toString()}${location.hash}`);
  return id;
}

const params = new URLSearchParams(location.search);
const sessionId = pickSession(params);
const wanted = params.get('transport');
const requested: Transport = wanted === 'ws' || wanted === 'sse' ? wanted : 'auto';
ui.session.textContent = sessionId;

// Connection indicator: one drop gives one "lost", one return one "reconnected", whoever reports it.
let down = false;
let reconnects = 0;
let transportReports = 0;
function showConnection(state: 'connected' | 'lost' | 'reconnected'): void {
  ui.connection.dataset.state = state;
  ui.connection.textContent = state === 'lost' ? 'connection lost, reconnecting…' : state === 'reconnected' ? `reconnected (${reconnects})` : 'connected';
}
function lost(): void {
  if (down) return;
  down = true;
  showConnection('lost');
}
function back(): void {
  if (!down) return;
  down = false;
  reconnects++;
  showConnection('reconnected');
}

const client = createChatClient({
  url: location.origin,
  transport: requested,
  getToken: currentToken,
  onTransport: (transport) => {
    if (transportReports++ > 0) return back();
    ui.transport.dataset.transport = transport;
    ui.transport.textContent = transport === 'ws' ? 'WebSocket' : requested === 'auto' ? 'SSE (WebSocket unavailable)' : 'SSE';
    showConnection('connected');
  },
  onDisconnect: lost,
});

function showAlert(text: string | undefined): void {
  ui.alert.hidden = text === undefined;
  ui.alert.textContent = text ?? '';
}

interface MessageView {
  readonly item: HTMLLIElement;
  readonly text: HTMLDivElement;
  setStatus(status: Status, detail?: string): void;
}

function addMessage(role: ChatMessage['role'], content: string, status: Status): MessageView {
  ui.empty.hidden = true;
  const item = document.createElement('li');
  item.className = 'message';
  item.dataset.role = role;
  const who = document.createElement('span');
  who.className = 'who';
  who.textContent = role === 'user' ? 'You' : 'Sluice';
  const text = document.createElement('div');
  text.className = 'text';
  text.textContent = content;
  item.append(who, text);
  ui.messages.append(item);
  const view: MessageView = {
    item,
    text,
    setStatus: (next, detail) => {
      item.dataset.status = next;
      // Screen readers announce the reply once it is whole, not token by token.
      item.setAttribute('aria-busy', String(next === 'streaming'));
      item.querySelector('.badge')?.remove();
      if (next === 'interrupted' || next === 'failed') {
        const badge = document.createElement('span');
        badge.className = 'badge';
        badge.dataset.status = next;
        badge.textContent = detail ? `${next}: ${detail}` : next;
        item.append(badge);
      }
    },
  };
  view.setStatus(status);
  return view;
}

const scrollToEnd = (): void => window.scrollTo({ top: document.body.scrollHeight });

/**
 * Shows text as it streams, once per frame: a reply's tokens may come faster than the screen
 * draws, and every scroll to the end lays out the whole page (per token, a long reply would cost
 * the square of its length).
 */
function streamInto(element: HTMLElement): { add(text: string): void; flush(): void } {
  const node = document.createTextNode('');
  element.append(node);
  let pending = '';
  let frame = 0;
  const flush = (): void => {
    cancelAnimationFrame(frame);
    frame = 0;
    if (pending === '') return;
    node.appendData(pending);
    pending = '';
    scrollToEnd();
  };
  return {
    add(text) {
      pending += text;
      frame ||= requestAnimationFrame(flush);
    },
    flush,
  };
}

let current: AbortController | undefined;
/** Reading the reply that ran when the page loaded (see follow). */
let following: AbortController | undefined;
/** The session's reply runs, but not from this page (sent before a reload, or from another tab): Stop cancels it. */
let runningElsewhere = false;
function setBusy(busy: boolean): void {
  ui.send.disabled = busy;
  ui.stop.disabled = !busy && !runningElsewhere;
  ui.input.disabled = false;
  if (!busy) ui.input.focus();
}

async function send(message: string): Promise<void> {
  showAlert(undefined);
  runningElsewhere = false;
  const controller = new AbortController();
  current = controller;
  setBusy(true);
  const user = addMessage('user', message, 'complete');
  const reply = addMessage('assistant', '', 'streaming');
  scrollToEnd();
  const timer = new ReplyTimer();
  const shown = streamInto(reply.text);
  let status: Status = 'streaming';
  try {
    const events = streamChat(client, {
      message,
      sessionId,
      signal: controller.signal,
      onConnection: (state) => (state === 'lost' ? lost() : back()),
    });
    for await (const event of events) {
      if (event.type === 'delta') {
        timer.delta();
        shown.add(event.delta);
        continue;
      }
      shown.flush();
      if (event.type === 'done') {
        status = 'complete';
        reply.setStatus('complete');
      } else {
        status = event.code === 'cancelled' || event.code === 'interrupted' ? 'interrupted' : 'failed';
        reply.setStatus(status, event.code === 'cancelled' ? 'cancelled' : event.message);
      }
    }
    shown.flush();
    if (status === 'streaming') reply.setStatus('interrupted', controller.signal.aborted ? 'stopped' : undefined);
    ui.stats.textContent = formatReplyStats(timer.stats());
  } catch (error) {
    // Refused before any token (busy session, bad input, ...): nothing was stored.
    user.item.remove();
    reply.item.remove();
    if (ui.messages.children.length === 0) ui.empty.hidden = false;
    const data = (error as { data?: { sluiceCode?: string | null } | null }).data;
    runningElsewhere = data?.sluiceCode === 'session_busy';
    showAlert(
      runningElsewhere
        ? 'A reply is still running in this session (sent before this page was loaded, or from another tab). Stop it, or wait for it to end.'
        : `${data?.sluiceCode ? `${data.sluiceCode}: ` : ''}${(error as Error).message}`,
    );
    ui.input.value = message;
    if (isUnauthorized(error)) askForToken(currentToken() ? 'The server refused the token (it may have expired). Paste a new one.' : undefined);
  } finally {
    current = undefined;
    setBusy(false);
  }
}

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  const message = ui.input.value.trim();
  // A reply the page follows has the session: the message waits in the box.
  if (!message || current || (following && runningElsewhere)) return;
  ui.input.value = '';
  void send(message);
});
ui.input.addEventListener('keydown', (event) => {
  if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    ui.form.requestSubmit();
  }
});
ui.stop.addEventListener('click', () => {
  if (current) {
    current.abort();
    return;
  }
  if (!runningElsewhere) return;
  // The session's running reply, whichever it is: this page never knew its id.
  ui.stop.disabled = true;
  const followed = following !== undefined;
  void client.chat.cancel.mutate({ sessionId }).then(
    async () => {
      runningElsewhere = false;
      showAlert(undefined);
      // A reply the page follows shows its own end; otherwise the history has it.
      if (!followed) await loadHistory();
    },
    (error: unknown) => {
      ui.stop.disabled = false;
      showAlert(`Could not stop the reply: ${(error as Error).message}`);
    },
  );
});
ui.newChat.addEventListener('click', () => {
  const id = newSessionId();
  localStorage.setItem('sluice.session', id);
  location.search = `?session=${id}${wanted ? `&transport=${encodeURIComponent(wanted)}` : ''}`;
});

/** Shows the token form (the server wants a credential this tab does not have, or refused it). */
function askForToken(reason?: string): void {
  if (reason) ui.signinReason.textContent = reason;
  ui.signin.hidden = false;
  ui.empty.hidden = true;
  document.body.dataset.signin = 'needed';
  ui.token.focus();
}

ui.signin.addEventListener('submit', (event) => {
  event.preventDefault();
  const token = ui.token.value.trim();
  if (!token) return;
  sessionStorage.setItem(TOKEN_KEY, token);
  ui.token.value = '';
  ui.signin.hidden = true;
  delete document.body.dataset.signin;
  showAlert(undefined);
  // The client asks for the token again by itself (over WebSocket, on a new connection).
  void loadHistory();
});

/** Waits between tries of following a reply whose stream was cut (then it is shown as lost). */
const FOLLOW_RETRY_MS = [500, 1000, 2000, 4000, 8000];

const pause = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(signal.reason);
      },
      { once: true },
    );
  });

interface Ending {
  readonly status: ChatMessage['status'];
  readonly detail?: string | undefined;
}

/**
 * Shows the session's running reply as it streams on, from its start: one sent before a reload,
 * or from another tab. The history leaves it out until it ends; the server's resume route for a
 * chat (the AI SDK's, `GET /v1/ui/chat/{id}/stream`) finds it without its id, on any instance, and
 * answers 204 when none runs. Stop cancels it as it cancels any reply of the session. A cut stream
 * is followed again from the start (the page's own replies resume too); a reply that ended out of
 * sight (while cut, or between the history's answer and this request) is in the history, read again.
 */
async function follow(unanswered: boolean): Promise<void> {
  const controller = new AbortController();
  following = controller;
  let reply: MessageView | undefined;
  let ending: Ending | undefined;
  let reread = false;
  try {
    for (let tries = 0; ending === undefined; tries++) {
      if (tries > 0) {
        if (tries > FOLLOW_RETRY_MS.length) break;
        await pause(FOLLOW_RETRY_MS[tries - 1]!, controller.signal);
      }
      const token = currentToken();
      const res = await fetch(`/v1/ui/chat/${encodeURIComponent(sessionId)}/stream`, {
        headers: token ? { authorization: `Bearer ${token}` } : {},
        signal: controller.signal,
        cache: 'no-store',
      }).catch((error: unknown) => {
        if (controller.signal.aborted) throw error;
        return undefined;
      });
      if (!res) continue;
      if (res.status === 204) {
        reread = unanswered || reply !== undefined;
        break;
      }
      if (res.status !== 200 || !res.body) {
        showAlert(`Could not follow the running reply (HTTP ${res.status})`);
        break;
      }
      if (!reply) {
        reply = addMessage('assistant', '', 'streaming');
        runningElsewhere = true;
        setBusy(true);
      }
      ending = await readReply(res.body, reply, controller.signal);
    }
  } finally {
    if (following === controller) {
      following = undefined;
      if (reply) {
        runningElsewhere = false;
        setBusy(false);
      }
    }
  }
  if (controller.signal.aborted) return;
  if (reread) await loadHistory(false);
  else reply?.setStatus(ending?.status ?? 'interrupted', ending ? ending.detail : 'connection lost');
}

/** Reads a reply's UI message stream into `reply`, from its start; undefined when the stream was cut before its end. */
async function readReply(body: NonNullable<Response['body']>, reply: MessageView, signal: AbortSignal): Promise<Ending | undefined> {
  reply.text.replaceChildren();
  const shown = streamInto(reply.text);
  scrollToEnd();
  let detail: string | undefined;
  // A reader, not `for await`: Safari's streams are not async iterable.
  const events = body.pipeThrough(new TextDecoderStream()).pipeThrough(new EventSourceParserStream()).getReader();
  try {
    for (;;) {
      const next = await events.read();
      if (next.done) return undefined;
      const { data } = next.value;
      if (data === '[DONE]') return undefined;
      const chunk = JSON.parse(data) as UIChatChunk;
      switch (chunk.type) {
        case 'text-delta':
          shown.add(chunk.delta);
          break;
        case 'abort':
          detail = chunk.reason;
          break;
        case 'error':
          detail = chunk.errorText;
          break;
        case 'finish':
          return { status: chunk.messageMetadata.status, detail };
        case 'start':
        case 'text-start':
        case 'text-end':
          break;
        default: {
          const unexpected: never = chunk;
          throw new TypeError(`unknown chunk ${JSON.stringify(unexpected)}`);
        }
      }
    }
  } catch (error) {
    if (signal.aborted) throw error;
    return undefined;
  } finally {
    shown.flush();
    void events.cancel().catch(() => undefined);
  }
}

async function loadHistory(followRunning = true): Promise<void> {
  following?.abort();
  following = undefined;
  ui.messages.replaceChildren();
  ui.empty.hidden = false;
  try {
    const { messages } = await client.chat.history.query({ sessionId });
    for (const m of messages) addMessage(m.role, m.content, m.status);
    document.body.dataset.ready = 'true';
    scrollToEnd();
    if (followRunning)
      void follow(messages.at(-1)?.role === 'user').catch((error: unknown) => {
        if (!(error instanceof DOMException && error.name === 'AbortError')) showAlert(`Could not follow the running reply: ${(error as Error).message}`);
      });
  } catch (error) {
    if (isUnauthorized(error)) {
      askForToken(currentToken() ? 'The server refused that token. Paste another one.' : undefined);
      document.body.dataset.ready = 'signin';
      return;
    }
    showAlert(`Could not load the history: ${(error as Error).message}`);
    document.body.dataset.ready = 'error';
  } finally {
    ui.input.disabled = false;
    ui.send.disabled = false;
    if (ui.signin.hidden) ui.input.focus();
  }
}

void loadHistory();
