/**
 * A WebSocket class whose messages hold at most `maxBatch` calls. tRPC's wsClient sends every call
 * made in one tick as one message, and every subscription again in one message when it
 * reconnects; the server refuses a message of more than its batch limit whole (`WS_MAX_BATCH`), so
 * a bigger batch goes out as several messages, in order.
 */
export function withBatchLimit(WebSocketImpl: typeof WebSocket, maxBatch: number): typeof WebSocket {
  return class extends WebSocketImpl {
    override send(data: Parameters<WebSocket['send']>[0]): void {
      // A batch is a JSON array (tRPC's default encoder); anything else goes as it is.
      if (typeof data !== 'string' || !data.startsWith('[')) return super.send(data);
      const calls = JSON.parse(data) as unknown[];
      if (calls.length <= maxBatch) return super.send(data);
      for (let i = 0; i < calls.length; i += maxBatch) super.send(JSON.stringify(calls.slice(i, i + maxBatch)));
    }
  };
}
