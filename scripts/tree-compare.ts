import fs from 'node:fs';
import path from 'node:path';
import { XattrReader } from '@pacha/shared/xattr/xattr';

// Compare two roots' copies of the same host paths: type, mode (incl. setuid/setgid/sticky),
// owner, group, symlink target, content and extended attributes (byte for byte). Used by the demo and by tests as the proof that
// a rebuilt tree came back exactly.
export interface TreeComparison {
  compared: number;
  differences: string[];
}

const xattrs = new XattrReader();

function describe(p: string): { kind: string; mode: number; uid: number; gid: number; detail: string; xattrs: string } | null {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return null;
  }
  const kind = st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
  const detail = kind === 'symlink' ? fs.readlinkSync(p) : kind === 'file' ? fs.readFileSync(p).toString('base64') : '';
  const x = xattrs
    .read(p)
    .map((a) => `${a.name}=${a.value.toString('base64')}`)
    .join(' ');
  return { kind, mode: st.mode & 0o7777, uid: st.uid, gid: st.gid, detail, xattrs: x };
}

export function compareTrees(rootA: string, rootB: string, hostPaths: string[]): TreeComparison {
  const differences: string[] = [];
  let compared = 0;
  const walk = (rel: string) => {
    const a = describe(path.join(rootA, rel));
    const b = describe(path.join(rootB, rel));
    compared++;
    if (!a || !b) {
      differences.push(`${rel}: ${a ? 'missing after rebuild' : 'not in the original'}`);
      return;
    }
    if (a.kind !== b.kind) differences.push(`${rel}: type ${a.kind} became ${b.kind}`);
    else {
      if (a.kind !== 'symlink' && a.mode !== b.mode) differences.push(`${rel}: mode ${a.mode.toString(8)} became ${b.mode.toString(8)}`);
      if (a.uid !== b.uid || a.gid !== b.gid) differences.push(`${rel}: owner ${a.uid}:${a.gid} became ${b.uid}:${b.gid}`);
      if (a.detail !== b.detail) differences.push(`${rel}: ${a.kind === 'symlink' ? 'link target' : 'content'} differs`);
      if (a.xattrs !== b.xattrs) differences.push(`${rel}: extended attributes ${a.xattrs || '(none)'} became ${b.xattrs || '(none)'}`);
    }
    if (a.kind === 'dir') {
      const names = new Set([...fs.readdirSync(path.join(rootA, rel)), ...(b.kind === 'dir' ? fs.readdirSync(path.join(rootB, rel)) : [])]);
      for (const n of [...names].sort()) walk(path.join(rel, n));
    }
  };
  for (const p of hostPaths) walk(p);
  return { compared, differences };
}
