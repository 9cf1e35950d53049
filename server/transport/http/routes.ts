import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson } from './json-io.ts';
import { handleChatCompletions, handleModel, handleModels, sendOpenAIError } from './openai-route.ts';
import type { RouteDeps, RouteHandler } from './route-context.ts';
import { handleCancel, handleDeleteSession, handleHistory } from './session-routes.ts';
import { handleChatStream } from './sse-route.ts';
import { handleUIChat, handleUIChatResume, handleUIChatStop } from './ui-chat-route.ts';
import { inviteBody } from './expect-continue.ts';
import { handleWebAsset, handleWebPage } from './web-routes.ts';

export interface Route {
  /** The method served, or `*` for any (tRPC answers the others itself). */
  readonly method: string;
  /** Matched against the normalized path (see normalize-path.ts); groups are the handler's params. */
  readonly path: RegExp;
  readonly handler: RouteHandler;
  /** Served without a credential (tRPC's procedures check theirs themselves). */
  readonly open?: boolean;
  /** The operator's: an end user's token is refused as a bad credential is (API keys only). */
  readonly operators?: boolean;
  /**
   * Served to pages of any site, with no origin check: the chat page and its assets (a link from
   * elsewhere opens the page). Every other route follows the origin policy (origin-policy.ts).
   */
  readonly anySite?: boolean;
  /** A GET that streams a reply: not served to HEAD, which would start or hold one for nobody. */
  readonly stream?: boolean;
  /** How this route answers errors found before its handler runs (origin, auth, rate limit); Sluice's shape by default. */
  readonly sendError?: (res: ServerResponse, error: unknown, req: IncomingMessage, deps: RouteDeps) => void;
}

/** The OpenAI routes' refusals in OpenAI's error shape. */
const refuseOpenAI: NonNullable<Route['sendError']> = (res, error) => sendOpenAIError(res, error);
/** tRPC's calls are refused in tRPC's words (see TrpcHttpRoutes.refuse). */
const refuseTrpc: NonNullable<Route['sendError']> = (res, error, req, deps) => deps.trpc.refuse(req, res, error);

/** Every HTTP route Sluice serves, in the order they are tried. */
export const ROUTES: readonly Route[] = [
  // Probes from any name (a kubelet sends the pod's address as Host): they tell nothing but "up".
  { method: 'GET', path: /^\/health$/, open: true, anySite: true, handler: async (_req, res) => sendJson(res, 200, { status: 'ok' }) },
  {
    method: 'GET',
    path: /^\/ready$/,
    open: true,
    anySite: true,
    handler: async (_req, res, deps) => {
      const ready = await deps.isReady();
      sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'unavailable' });
    },
  },
  {
    method: 'GET',
    path: /^\/metrics$/,
    operators: true,
    handler: async (_req, res, deps) => {
      const { contentType, body } = await deps.metrics.render();
      res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
      res.end(body);
    },
  },
  { method: 'POST', path: /^\/v1\/chat\/stream$/, handler: handleChatStream },
  { method: 'POST', path: /^\/v1\/chat\/cancel$/, handler: handleCancel },
  { method: 'GET', path: /^\/v1\/sessions\/([^/]+)\/messages$/, handler: handleHistory },
  { method: 'DELETE', path: /^\/v1\/sessions\/([^/]+)$/, handler: handleDeleteSession },
  { method: 'POST', path: /^\/v1\/chat\/completions$/, handler: handleChatCompletions, sendError: refuseOpenAI },
  { method: 'GET', path: /^\/v1\/models$/, handler: handleModels, sendError: refuseOpenAI },
  { method: 'GET', path: /^\/v1\/models\/([^/]+)$/, handler: handleModel, sendError: refuseOpenAI },
  // The AI SDK's UI message stream protocol (`useChat`).
  { method: 'POST', path: /^\/v1\/ui\/chat$/, handler: handleUIChat },
  { method: 'GET', path: /^\/v1\/ui\/chat\/([^/]+)\/stream$/, stream: true, handler: handleUIChatResume },
  { method: 'POST', path: /^\/v1\/ui\/chat\/([^/]+)\/stop$/, handler: handleUIChatStop },
  // tRPC: Sluice's own SSE producer for the hot subscription, tRPC's handler for everything else.
  { method: 'GET', path: /^\/trpc\/chat\.stream$/, open: true, stream: true, handler: (req, res, deps) => deps.trpc.sse(req, res) },
  {
    method: '*',
    path: /^\/trpc\/[^/]+$/,
    open: true,
    handler: async (req, res, deps) => {
      // tRPC's handler reads the body itself.
      inviteBody(req);
      deps.trpc.http(req, res);
    },
    sendError: refuseTrpc,
  },
  { method: 'GET', path: /^\/$/, open: true, anySite: true, handler: handleWebPage },
  { method: 'GET', path: /^\/assets\/([A-Za-z0-9._-]+)$/, open: true, anySite: true, handler: handleWebAsset },
];
