import fs from 'node:fs';
import { hostPath } from '../paths.ts';

// Owner and group names as the snapshotted host knows them: its own /etc/passwd and /etc/group
// under the root dir (not the names of the machine running the tests or the container).
export interface Owners {
  user(uid: number): string;
  group(gid: number): string;
  /** Changes when either file changes: cached metadata lines carry the names. */
  signature: string;
}

function readIds(file: string): { names: Map<number, string>; sig: string } {
  const names = new Map<number, string>();
  let text = '';
  let sig = 'none';
  try {
    text = fs.readFileSync(file, 'utf8');
    const st = fs.statSync(file, { bigint: true });
    sig = `${st.size}:${st.mtimeNs}:${st.ino}`;
  } catch {
    return { names, sig };
  }
  for (const line of text.split('\n')) {
    const f = line.split(':');
    if (f.length < 3 || f[0] === '' || line.startsWith('#')) continue;
    const id = Number(f[2]);
    // The first name of an id wins, as getpwuid() does.
    if (Number.isSafeInteger(id) && !names.has(id)) names.set(id, f[0]);
  }
  return { names, sig };
}

export function loadOwners(root: string): Owners {
  const pw = readIds(hostPath('/etc/passwd', root));
  const gr = readIds(hostPath('/etc/group', root));
  return {
    user: (uid) => pw.names.get(uid) ?? '',
    group: (gid) => gr.names.get(gid) ?? '',
    signature: `${pw.sig}/${gr.sig}`,
  };
}
