// Real BPE tokens (OpenAI's o200k_base, from the gpt-tokenizer package) for the simulator, so that
// benchmarks see the delta sizes of a real model. The encoding's tables take ~0.5 s to load, so
// they are loaded once, on first use, and only when BPE mode is on.

export interface BpeTokenizer {
  /** The text split into its tokens' texts (a character split across tokens stays whole). */
  split(text: string): string[];
  count(text: string): number;
}

// Text that looks like a special token (`<|endoftext|>`) is ordinary text here, not an error.
const AS_TEXT = { disallowedSpecial: new Set<string>() };

let loading: Promise<BpeTokenizer> | undefined;

export function loadBpeTokenizer(): Promise<BpeTokenizer> {
  loading ??= import('gpt-tokenizer/encoding/o200k_base').then((m) => ({
    // decodeGenerator holds back the bytes of a character that continues in the next token.
    split: (text) => [...m.decodeGenerator(m.encode(text, AS_TEXT))].filter((piece) => piece.length > 0),
    count: (text) => m.countTokens(text, AS_TEXT),
  }));
  return loading;
}
