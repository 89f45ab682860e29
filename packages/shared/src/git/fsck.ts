import type { ObjectType } from './objects.ts';

// The well-formedness rules native `git fsck --strict` applies to single objects, so that what
// pacha accepts (the master, before a pack becomes visible) and what `pacha-master verify`
// passes, native git passes too. Returns what is wrong, or null.

const TREE_MODES = new Set(['100644', '100755', '120000', '40000', '160000']);
const OID_LINE = /^[0-9a-f]{40}$/;
// "Name <email> 1700000000 +0000": git's ident rules (fsck_ident): no '<' or '>' in the name or
// the email, one space before '<', a date without leading zeros, a four-digit zone.
const IDENT = /^[^<>\n]* <[^<>\n]*> (?:0|[1-9][0-9]*) [+-][0-9]{4}$/;

export function checkObject(type: ObjectType, content: Buffer): string | null {
  if (type === 'tree') return checkTree(content);
  if (type === 'commit') return checkCommit(content);
  if (type === 'tag') return checkTag(content);
  return null;
}

function checkTree(content: Buffer): string | null {
  let prevKey: Buffer | null = null;
  const names = new Set<string>();
  for (let p = 0; p < content.length; ) {
    const sp = content.indexOf(0x20, p);
    const nul = sp < 0 ? -1 : content.indexOf(0, sp);
    if (sp < 0 || nul < 0 || nul + 21 > content.length) return 'tree: entry is truncated';
    const mode = content.toString('latin1', p, sp);
    const nameBytes = content.subarray(sp + 1, nul);
    const name = nameBytes.toString('latin1');
    if (!TREE_MODES.has(mode)) return `tree: entry ${JSON.stringify(name)} has mode ${mode} (accepted: ${[...TREE_MODES].join(', ')})`;
    if (name === '' || name === '.' || name === '..' || name.includes('/')) return `tree: entry name ${JSON.stringify(name)} is not allowed`;
    const lower = name.toLowerCase();
    if (lower === '.git' || lower === 'git~1' || lower.replace(/[. ]+$/, '') === '.git') return `tree: entry name ${JSON.stringify(name)} is not allowed`;
    if (names.has(name)) return `tree: entry ${JSON.stringify(name)} appears twice`;
    names.add(name);
    const key = mode === '40000' ? Buffer.concat([nameBytes, Buffer.from('/')]) : nameBytes;
    if (prevKey !== null && Buffer.compare(prevKey, key) >= 0) return `tree: entries are not sorted at ${JSON.stringify(name)}`;
    prevKey = key;
    p = nul + 21;
  }
  return null;
}

/** The header lines up to the blank line; null when a NUL byte is in them or there is no blank line. */
function headerLines(content: Buffer): string[] | null {
  const end = content.indexOf('\n\n');
  if (end < 0) return null;
  const head = content.subarray(0, end);
  if (head.includes(0)) return null;
  return head.toString('utf8').split('\n');
}

function checkCommit(content: Buffer): string | null {
  const lines = headerLines(content);
  if (lines === null) return 'commit: no blank line after the header, or a NUL byte in it';
  let i = 0;
  if (!lines[i]?.startsWith('tree ') || !OID_LINE.test(lines[i].slice(5))) return 'commit: the first line is not "tree <id>"';
  i++;
  while (lines[i]?.startsWith('parent ')) {
    if (!OID_LINE.test(lines[i].slice(7))) return 'commit: bad parent line';
    i++;
  }
  if (!lines[i]?.startsWith('author ') || !IDENT.test(lines[i].slice(7))) return 'commit: bad or missing author line';
  i++;
  if (!lines[i]?.startsWith('committer ') || !IDENT.test(lines[i].slice(10))) return 'commit: bad or missing committer line';
  return null;
}

function checkTag(content: Buffer): string | null {
  const lines = headerLines(content);
  if (lines === null) return 'tag: no blank line after the header, or a NUL byte in it';
  if (!lines[0]?.startsWith('object ') || !OID_LINE.test(lines[0].slice(7))) return 'tag: the first line is not "object <id>"';
  if (!/^type (?:commit|tree|blob|tag)$/.test(lines[1] ?? '')) return 'tag: bad type line';
  if (!/^tag \S/.test(lines[2] ?? '')) return 'tag: bad tag line';
  if (lines[3] !== undefined && (!lines[3].startsWith('tagger ') || !IDENT.test(lines[3].slice(7)))) return 'tag: bad tagger line';
  return null;
}
