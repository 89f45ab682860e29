import fs from 'node:fs';
import { escapeTerminal } from './terminal.ts';

export type Level = 'error' | 'warn' | 'info' | 'debug';
const rank: Record<Level, number> = { error: 0, warn: 1, info: 2, debug: 3 };

// One readable line per event on stderr (journald adds its own timestamps), and the same
// lines with a timestamp in pacha.log.path. Secrets never reach here: redact() strips the
// usual shapes of them, and the values registered with registerSecret, in case a message
// carries one by accident. Every line is escaped for the terminal (terminal.ts) on its way out.
export interface Logger {
  error(msg: string): void;
  warn(msg: string): void;
  info(msg: string): void;
  debug(msg: string): void;
  /** Progress lines: shown on a terminal unless --json/quiet; never written to the log file. */
  progress(msg: string): void;
  readonly verbose: boolean;
}

export interface LoggerOptions {
  verbose?: boolean;
  quiet?: boolean;
  file?: string;
  stream?: NodeJS.WritableStream;
  /** Prefix each line with its syslog priority; default: when stderr is the journal (stderrIsJournal). */
  journal?: boolean;
}

// Under systemd, a "<N>" at the start of a line gives journald its priority (sd-daemon(3));
// journald stamps the time itself.
const PRIORITY: Record<Level, number> = { error: 3, warn: 4, info: 6, debug: 7 };

/**
 * True when standard error is connected to the journal: systemd sets JOURNAL_STREAM to the
 * device and inode of the stream it hands the service, and a child whose stderr was redirected
 * inherits the variable but not the stream (systemd.exec(5) says to compare them).
 */
export function stderrIsJournal(env: NodeJS.ProcessEnv = process.env): boolean {
  const m = /^(\d+):(\d+)$/.exec(env.JOURNAL_STREAM ?? '');
  if (!m) return false;
  try {
    const st = fs.fstatSync(2, { bigint: true });
    return st.dev === BigInt(m[1]) && st.ino === BigInt(m[2]);
  } catch {
    return false;
  }
}

/** Text for standard error at a level: every line with its priority when `journal`. */
export function levelLines(level: Level, text: string, journal: boolean): string {
  if (!journal) return text;
  return text.replace(/^(?=.)/gm, `<${PRIORITY[level]}>`);
}

const SECRET = /(-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----)|((?:passphrase|password|token|secret)=)\S+|(\b[a-z][a-z0-9+.-]*:\/\/)[^\s/?#@]+@/gi;

// Secrets known by value (the key passphrase, the callback URL's password): masked wherever
// they appear, e.g. in a hook's output. Short values are left out: masking "ab" everywhere
// would garble every message and hide nothing worth hiding.
const MIN_SECRET_LENGTH = 6;
const secrets = new Set<string>();

export function registerSecret(value: string | undefined): void {
  if (value !== undefined && value.length >= MIN_SECRET_LENGTH) secrets.add(value);
}

export function redact(s: string): string {
  let out = s.replace(SECRET, (_m, key: string | undefined, assign: string | undefined, scheme: string | undefined) =>
    key ? '[private key redacted]' : assign ? `${assign}[redacted]` : `${scheme}***@`,
  );
  for (const v of secrets) if (out.includes(v)) out = out.split(v).join('***');
  return out;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  const stream = opts.stream ?? process.stderr;
  const journal = opts.journal ?? (stream === process.stderr && stderrIsJournal());
  const max: Level = opts.verbose ? 'debug' : opts.quiet ? 'warn' : 'info';
  let fd: number | undefined;
  if (opts.file) {
    try {
      fd = fs.openSync(opts.file, 'a', 0o640);
    } catch (e) {
      stream.write(levelLines('warn', `pacha: warning: cannot open log file ${opts.file}: ${(e as Error).message}\n`, journal));
    }
  }
  const emit = (level: Level, msg: string) => {
    const line = escapeTerminal(redact(msg), { composed: true });
    if (rank[level] <= rank[max]) {
      const prefix = level === 'error' ? 'error: ' : level === 'warn' ? 'warning: ' : '';
      stream.write(levelLines(level, `${prefix}${line}\n`, journal));
    }
    if (fd !== undefined && (level !== 'debug' || opts.verbose)) {
      fs.writeSync(fd, `${new Date().toISOString()} ${level} ${line}\n`);
    }
  };
  const tty = (stream as NodeJS.WriteStream).isTTY === true;
  return {
    verbose: opts.verbose === true,
    error: (m) => emit('error', m),
    warn: (m) => emit('warn', m),
    info: (m) => emit('info', m),
    debug: (m) => emit('debug', m),
    progress: (m) => {
      // Called for every file of a rebuild: nothing is built when nothing is shown.
      if (opts.quiet || (!tty && !opts.verbose)) return;
      const line = escapeTerminal(redact(m));
      if (tty) stream.write(`\r\x1b[K${line}`);
      else if (opts.verbose) stream.write(levelLines('info', `${line}\n`, journal));
    },
  };
}

/** A logger that drops everything: for library calls in tests. */
export const silentLogger: Logger = {
  verbose: false,
  error() {},
  warn() {},
  info() {},
  debug() {},
  progress() {},
};
