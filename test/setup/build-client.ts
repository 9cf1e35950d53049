import { buildClient } from '../helpers/client-build.ts';

/** Vitest global setup: the client package is compiled once, before any test file runs. */
export default async function setup(): Promise<void> {
  await buildClient();
}
