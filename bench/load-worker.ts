import { parentPort, workerData } from 'node:worker_threads';
import { runOn, type LoadSpec } from './load.ts';
import { targetByName } from './targets.ts';

// One load worker (see load-workers.ts): its own client of the target, driving the parts of the
// load it is sent, on its own event loop.

interface Message {
  readonly id: number;
  readonly spec?: LoadSpec;
}

const { target: name, url } = workerData as { target: string; url: string };
const target = targetByName(name);
// The probe also learns what the client needs to know (the model id the OpenAI route serves).
await target.probe?.(url);
const client = target.client(url);
const makeClient = (): ReturnType<typeof target.client> => target.client(url);
const port = parentPort!;

port.on('message', (message: Message) => {
  if (!message.spec) {
    void client.close().finally(() => port.close());
    return;
  }
  runOn(client, makeClient, message.spec).then(
    (result) => port.postMessage({ id: message.id, result }),
    (error: unknown) => port.postMessage({ id: message.id, error: String(error) }),
  );
});
port.postMessage({ ready: true });
