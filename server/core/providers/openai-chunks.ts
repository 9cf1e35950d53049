import { createParser, type EventSourceMessage, type EventSourceParser } from 'eventsource-parser';
import type { TokenUsage } from '../../../shared/messages.ts';
import { UpstreamStreamFault } from './upstream-errors.ts';

// Reads the body of a streamed chat completion: SSE events (eventsource-parser) whose `data` is a
// `chat.completion.chunk` in JSON, then `data: [DONE]`. Nothing in it is trusted: a chunk we cannot
// read is the upstream's fault, and its text goes to the logs only.

/** One SSE event larger than this (in characters) is a malformed stream, not a reason to buffer on. */
export const MAX_EVENT_CHARS = 1 << 20;

interface ChunkChoice {
  readonly index?: unknown;
  /** `reasoning_content` (DeepSeek, vLLM) or `reasoning` (OpenRouter, Ollama): a reasoning model's thinking, not shown. */
  readonly delta?: { readonly content?: unknown; readonly reasoning_content?: unknown; readonly reasoning?: unknown } | null;
  readonly finish_reason?: unknown;
}
interface Chunk {
  readonly choices: readonly ChunkChoice[];
  readonly usage?: { readonly prompt_tokens?: unknown; readonly completion_tokens?: unknown } | null;
}

const clip = (text: string): string => (text.length > 200 ? `${text.slice(0, 200)}…` : text);

function parseChunk(data: string): Chunk {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch (error) {
    throw new UpstreamStreamFault('malformed', `${(error as Error).message}: ${clip(data)}`);
  }
  if (typeof value !== 'object' || value === null) throw new UpstreamStreamFault('malformed', `chunk is not an object: ${clip(data)}`);
  // OpenAI reports a failure mid-reply as an `{"error": ...}` chunk in the 200 stream.
  const error = (value as { error?: unknown }).error;
  if (error !== undefined && error !== null) throw new UpstreamStreamFault('error_chunk', clip(JSON.stringify(error) ?? ''));
  if (!Array.isArray((value as { choices?: unknown }).choices)) throw new UpstreamStreamFault('malformed', `chunk without a choices array: ${clip(data)}`);
  return value as Chunk;
}

/**
 * More tokens than any model reads or writes in one reply: a count past it is made up, and is
 * ignored (Sluice counts the reply itself), so that it reaches neither the history (a PostgreSQL
 * `INTEGER`, the schema's safe integers) nor the usage counters.
 */
export const MAX_REPORTED_TOKENS = 100_000_000;

const plausible = (n: unknown): n is number => Number.isInteger(n) && (n as number) >= 0 && (n as number) <= MAX_REPORTED_TOKENS;

function usageOf(chunk: Chunk): TokenUsage | undefined {
  const u = chunk.usage;
  if (!u) return undefined;
  const { prompt_tokens: p, completion_tokens: c } = u;
  if (!plausible(p) || !plausible(c)) return undefined;
  return { promptTokens: p, completionTokens: c };
}

/**
 * Fed the body's text as it arrives: `feed` returns the content deltas it completed, in order, up
 * to the first thing it cannot read; `check` then throws that (an UpstreamStreamFault), so that the
 * deltas before a fault are still sent, as they would have been had they come in a read of their own.
 */
export class CompletionChunkReader {
  readonly #onChunk: () => void;
  readonly #onUsage: ((usage: TokenUsage) => void) | undefined;
  readonly #onReasoning: (() => void) | undefined;
  readonly #parser: EventSourceParser;
  /** The events the current feed completed. */
  #events: EventSourceMessage[] = [];
  /** An event too large to read, met by the current feed after its #events. */
  #tooLarge: UpstreamStreamFault | undefined;
  #fault: UpstreamStreamFault | undefined;
  #finishReason: string | undefined;
  #done = false;

  /**
   * `onChunk`: every chunk read (the stall watchdog's sign of life); `onUsage`: the usage chunk;
   * `onReasoning`: a chunk of a reasoning model's thinking (the model has started replying).
   */
  constructor(onChunk: () => void, onUsage?: (usage: TokenUsage) => void, onReasoning?: () => void) {
    this.#onChunk = onChunk;
    this.#onUsage = onUsage;
    this.#onReasoning = onReasoning;
    this.#parser = createParser({
      onEvent: (event) => void this.#events.push(event),
      onError: (error) => {
        // An event beyond MAX_EVENT_CHARS; unknown fields are ignored, as the SSE standard says.
        if (error.type === 'max-buffer-size-exceeded') this.#tooLarge ??= new UpstreamStreamFault('malformed', error.message);
      },
      maxBufferSize: MAX_EVENT_CHARS,
    });
  }

  /** A choice said why it finished (`finish_reason`): the reply is whole. */
  get finished(): boolean {
    return this.#finishReason !== undefined;
  }

  /** The `finish_reason` the upstream gave, if any. */
  get finishReason(): string | undefined {
    return this.#finishReason;
  }

  /** `data: [DONE]` was read: the stream is over, whether or not its response ends. */
  get done(): boolean {
    return this.#done;
  }

  feed(text: string): string[] {
    if (this.#fault || this.#done) return [];
    this.#parser.feed(text);
    const events = this.#events;
    const deltas: string[] = [];
    if (events.length > 0) {
      this.#events = [];
      try {
        for (const event of events) {
          // The SSE standard dispatches no event with empty data (eventsource-parser does): some
          // proxies send them as keep-alives. Not a sign of life either, as comments are not.
          if (event.data === '') continue;
          if (event.data === '[DONE]') {
            // Nothing after it is read.
            this.#done = true;
            break;
          }
          if (event.event === 'error') throw new UpstreamStreamFault('error_chunk', clip(event.data));
          this.#read(parseChunk(event.data), deltas);
        }
      } catch (error) {
        if (!(error instanceof UpstreamStreamFault)) throw error;
        this.#fault = error;
      }
    }
    if (!this.#done) this.#fault ??= this.#tooLarge;
    return deltas;
  }

  /** Throws what the last feed could not read, if anything. */
  check(): void {
    if (this.#fault) throw this.#fault;
  }

  #read(chunk: Chunk, deltas: string[]): void {
    this.#onChunk();
    const usage = usageOf(chunk);
    if (usage) this.#onUsage?.(usage);
    for (const choice of chunk.choices) {
      if (typeof choice !== 'object' || choice === null) throw new UpstreamStreamFault('malformed', 'choice is not an object');
      // n is always 1; a choice with another index is not ours to show.
      if (choice.index !== undefined && choice.index !== 0) continue;
      const thinking = choice.delta?.reasoning_content ?? choice.delta?.reasoning;
      if (typeof thinking === 'string' && thinking.length > 0) this.#onReasoning?.();
      const content = choice.delta?.content;
      if (typeof content === 'string') {
        if (content.length > 0) deltas.push(content);
      } else if (content !== undefined && content !== null) {
        throw new UpstreamStreamFault('malformed', 'delta.content is not a string');
      }
      if (typeof choice.finish_reason === 'string') this.#finishReason = choice.finish_reason;
    }
  }
}
