import { isOid } from './objects.ts';

// The commit object: header lines (tree, parent..., author, committer), a blank line, the message.

export interface CommitInfo {
  tree: string;
  /** Parents in stored order: parents[0] is the first parent, the line pacha's history follows. */
  parents: string[];
  /** Committer time, seconds since the epoch. */
  time: number;
  author: string;
  message: string;
}

export interface CommitFields {
  tree: string;
  parent: string | null;
  /** "Name <email>" */
  author: string;
  /** Seconds since the epoch. */
  time: number;
  message: string;
}

export function serializeCommit(c: CommitFields): Buffer {
  const who = `${c.author} ${c.time} +0000`;
  let s = `tree ${c.tree}\n`;
  if (c.parent) s += `parent ${c.parent}\n`;
  s += `author ${who}\ncommitter ${who}\n\n${c.message.endsWith('\n') ? c.message : c.message + '\n'}`;
  return Buffer.from(s);
}

/** A commit's headers and message; throws unless it has a tree, well-formed parents and a committer time. */
export function parseCommit(content: Buffer): CommitInfo {
  const text = content.toString('utf8');
  const end = text.indexOf('\n\n');
  const head = end < 0 ? text : text.slice(0, end);
  const info: CommitInfo = { tree: '', parents: [], time: NaN, author: '', message: end < 0 ? '' : text.slice(end + 2) };
  for (const line of head.split('\n')) {
    if (line.startsWith('tree ')) info.tree = line.slice(5);
    else if (line.startsWith('parent ')) {
      const p = line.slice(7);
      if (!isOid(p)) throw new Error(`not a well-formed commit: parent "${p.slice(0, 60)}"`);
      info.parents.push(p);
    } else if (line.startsWith('author ')) info.author = line.slice(7).replace(/ \d+ [+-]\d{4}$/, '');
    else if (line.startsWith('committer ')) {
      const m = / (\d+) [+-]\d{4}$/.exec(line);
      if (m) info.time = Number(m[1]);
    }
  }
  if (!isOid(info.tree)) throw new Error('not a well-formed commit: no tree line');
  if (Number.isNaN(info.time)) throw new Error('not a well-formed commit: no committer time');
  return info;
}
