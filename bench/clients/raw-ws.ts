import WebSocket from 'ws';
import { StreamCheck, type StreamOutcome } from '../stream-check.ts';
import type { LoadClient, StreamRequest, User } from './types.ts';

// Client of the raw `ws` baseline: one socket per user, opened with its first stream (so that
// stream's times include the connection), kept for the user's later streams.

interface Frame {
  readonly id: string;
  readonly type: 'delta' | 'done';
  readonly delta?: string;
  readonly index?: number;
  readonly totalChunks?: number;
}

export function rawWsClient(baseUrl: string): LoadClient {
  const url = `${baseUrl.replace(/^http/, 'ws')}/ws`;
  const users = new Set<WebSocket>();

  const user = (): User => {
    let socket: WebSocket | undefined;
    let opened: Promise<void> | undefined;
    let current: { check: StreamCheck; done: (o: StreamOutcome) => void } | undefined;

    const open = (): Promise<void> => {
      const ws = new WebSocket(url, { perMessageDeflate: false });
      socket = ws;
      users.add(ws);
      ws.on('message', (data) => {
        if (!current) return;
        const frame = JSON.parse((data as Buffer).toString()) as Frame;
        if (frame.type === 'delta') current.check.delta(frame.delta!, frame.index);
        else current.done(current.check.done(frame.totalChunks));
      });
      ws.on('close', () => {
        users.delete(ws);
        current?.done(current.check.fail('socket closed'));
      });
      return new Promise((resolve, reject) => {
        ws.once('open', () => resolve());
        ws.once('error', (error) => reject(error));
      });
    };

    return {
      stream: (req: StreamRequest) =>
        new Promise<StreamOutcome>((resolve) => {
          const check = new StreamCheck(req.expected);
          const timer = setTimeout(() => finish(check.fail(`timed out after ${req.timeoutMs} ms`)), req.timeoutMs);
          const finish = (o: StreamOutcome): void => {
            clearTimeout(timer);
            current = undefined;
            resolve(o);
          };
          current = { check, done: finish };
          opened ??= open();
          opened.then(
            () => socket!.send(JSON.stringify({ message: req.message, sessionId: req.sessionId })),
            (error: Error) => {
              opened = undefined;
              finish(check.fail(`connect failed: ${error.message}`));
            },
          );
        }),
      close: async () => {
        socket?.terminate();
      },
    };
  };

  return {
    user,
    close: async () => {
      for (const ws of users) ws.terminate();
    },
  };
}
