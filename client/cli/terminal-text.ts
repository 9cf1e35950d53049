// What the server sends (a model's text, history, error messages) reaches a terminal as text to
// show, never as commands to it: a reply steered by a page the model read could otherwise clear
// the screen, rewrite earlier lines, retitle the window or set the clipboard (OSC 52). Into a pipe
// or a file the text goes as sent: that reader asked for the model's bytes.

// C0 controls but tab and line feed, DEL, and C1 controls (U+009B is CSI to many terminals).
// eslint-disable-next-line no-control-regex -- matching them is the point
const CONTROL = /\r\n|[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

function visible(char: string): string {
  if (char === '\r\n') return '\n';
  const code = char.charCodeAt(0);
  // Unicode's Control Pictures: U+2400 + code for C0, U+2421 for DEL.
  if (code < 0x20) return String.fromCharCode(0x2400 + code);
  if (code === 0x7f) return '\u2421';
  return `\\x${code.toString(16)}`;
}

/** `text` with every control character a terminal would act on shown as a visible sign. */
export function showControls(text: string): string {
  return text.replace(CONTROL, visible);
}

/** How text from the server is written to `stream`: made visible at a terminal, as sent elsewhere. */
export function textFor(stream: NodeJS.WriteStream): (text: string) => string {
  return stream.isTTY === true ? showControls : (text) => text;
}

/** A reply's text as it streams, shown delta by delta (see textFor). */
export interface ReplyText {
  /** What to write for the next delta. */
  show(delta: string): string;
  /** What is left to write once the reply is over. */
  end(): string;
}

/**
 * textFor for a streamed reply: a CRLF the stream split between two deltas (tokenizers have `\r`
 * and `\n` as tokens of their own) is a line end, as in one delta; a `\r` at a delta's end waits
 * for the next one to say which it is.
 */
export function replyTextFor(stream: NodeJS.WriteStream): ReplyText {
  if (stream.isTTY !== true) return { show: (delta) => delta, end: () => '' };
  let held = false;
  return {
    show(delta) {
      let text = delta;
      if (held) {
        held = false;
        if (!text.startsWith('\n')) text = `\r${text}`;
      }
      if (text.endsWith('\r')) {
        held = true;
        text = text.slice(0, -1);
      }
      return showControls(text);
    },
    end() {
      const rest = held ? showControls('\r') : '';
      held = false;
      return rest;
    },
  };
}
