// Text from outside pacha (path names, commit messages, user names and hook output from a
// repository or a master) is shown on the operator's terminal only through escapeTerminal:
// a control character could otherwise move the cursor, erase or fake lines of the plan the
// operator is asked to confirm. --json output keeps the exact text (JSON escapes it itself).

export interface EscapeOptions {
  /**
   * A whole message pacha composed (the logger's and the error printer's last line of defence):
   * its line breaks and backslashes are pacha's own and stay; every other control is escaped.
   * The outside text inside it was escaped where it was put in.
   */
  composed?: boolean;
}

// C0 controls, DEL, C1 controls (U+0080-U+009F: U+009B is a one-character CSI), and the
// Unicode bidirectional overrides and isolates that reorder what a line appears to say. A
// backslash is doubled so that an escaped control cannot be told apart from typed text.
const UNSAFE = /[\x00-\x1f\x7f-\x9f\\\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
const NAMED: Record<string, string> = { '\\': '\\\\', '\n': '\\n', '\r': '\\r', '\t': '\\t', '\x1b': '\\x1b' };

function escapeChar(ch: string): string {
  const named = NAMED[ch];
  if (named !== undefined) return named;
  const c = ch.charCodeAt(0);
  return c <= 0xff ? `\\x${c.toString(16).padStart(2, '0')}` : `\\u${c.toString(16).padStart(4, '0')}`;
}

/** The text with every character that could act on a terminal written as a visible escape. */
export function escapeTerminal(s: string, opts: EscapeOptions = {}): string {
  if (opts.composed) return s.replace(UNSAFE, (ch) => (ch === '\n' || ch === '\\' ? ch : escapeChar(ch)));
  return s.replace(UNSAFE, escapeChar);
}
