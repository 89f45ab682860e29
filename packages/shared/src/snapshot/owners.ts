import fs from 'node:fs';
import { parseIdNames } from '../accounts.ts';
import { hostPath } from '../paths.ts';
import { PachaError, errnoOf, errorMessage } from '../errors.ts';

// Owner and group names as the snapshotted host knows them: its own /etc/passwd and /etc/group
// under the root dir (not the names of the machine running the tests or the container).
export interface Owners {
  user(uid: number): string;
  group(gid: number): string;
  /** Changes when either file changes: cached metadata lines carry the names. */
  signature: string;
}

function readIds(file: string): { names: Map<number, string>; sig: string } {
  let text: string;
  let sig: string;
  try {
    text = fs.readFileSync(file, 'utf8');
    const st = fs.statSync(file, { bigint: true });
    sig = `${st.size}:${st.mtimeNs}:${st.ino}`;
  } catch (e) {
    // A root without the file (a container, a test root) has no names; an unreadable one is an
    // error: snapshotting every path without its owner's name would lose them quietly.
    if (errnoOf(e) === 'ENOENT') return { names: new Map(), sig: 'none' };
    throw new PachaError(`cannot read ${file}: ${errorMessage(e)}`, { cause: e, hint: 'owners and groups are recorded by name from it: make it readable' });
  }
  return { names: parseIdNames(text).byId, sig };
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
