import { ChatCompletionChunk, OpenAIErrorBody } from '../../shared/openai.ts';

export interface CompatStream {
  readonly status: number;
  readonly headers: Headers;
  /** Parsed chunks, in order (validated against the shared schema). */
  readonly chunks: ChatCompletionChunk[];
  /** An `{"error": ...}` line, if the stream had one. */
  readonly error: OpenAIErrorBody | undefined;
  /** The stream ended with `data: [DONE]`. */
  readonly done: boolean;
  /** The whole body as text (for checks that nothing leaked). */
  readonly text: string;
  /** The JSON body of a non-200 answer. */
  readonly errorBody: OpenAIErrorBody | undefined;
}

/** POSTs to `/v1/chat/completions` with fetch and reads the whole answer, stream or not. */
export async function postCompletion(baseUrl: string, body: unknown, headers: Record<string, string> = {}): Promise<CompatStream> {
  const res = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(body),
  });
  const text = await res.text();
  if (res.status !== 200) {
    return { status: res.status, headers: res.headers, chunks: [], error: undefined, done: false, text, errorBody: OpenAIErrorBody.parse(JSON.parse(text)) };
  }
  const chunks: ChatCompletionChunk[] = [];
  let error: OpenAIErrorBody | undefined;
  let done = false;
  for (const block of text.split('\n\n')) {
    if (!block.startsWith('data: ')) continue;
    const data = block.slice('data: '.length);
    if (done) throw new Error(`data after [DONE]: ${data}`);
    if (data === '[DONE]') done = true;
    else if (data.startsWith('{"error"')) error = OpenAIErrorBody.parse(JSON.parse(data));
    else chunks.push(ChatCompletionChunk.parse(JSON.parse(data)));
  }
  return { status: res.status, headers: res.headers, chunks, error, done, text, errorBody: undefined };
}

/** The text of a streamed reply: its chunks' content, joined. */
export const chunkText = (chunks: readonly ChatCompletionChunk[]): string => chunks.map((c) => c.choices[0]?.delta.content ?? '').join('');
