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
