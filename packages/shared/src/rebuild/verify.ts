import { hostPath } from '../paths.ts';
import { formatMode } from '../format/entry.ts';
import type { OwnerResolver } from './owners.ts';
import { holdsBlob, lstatExisting } from './plan.ts';
import type { RestoreItem } from './validate.ts';
import { loadOwners } from '../snapshot/owners.ts';
import type { XattrRestorer } from '../xattr/xattr.ts';

// --verify: read back every restored path and compare it with the snapshot: type, content
// (git blob id), symlink target, mode, owner, group and extended attributes.

export async function verifyRestored(items: RestoreItem[], root: string, resolver: OwnerResolver, xattrs?: XattrRestorer): Promise<string[]> {
  const problems: string[] = [];
  const liveNames = loadOwners(root);
  for (const it of items) {
    const local = hostPath(it.hostPath, root);
    const ex = lstatExisting(local);
    if (!ex) {
      problems.push(`${it.hostPath}: missing`);
      continue;
    }
    if (ex.type !== it.type) {
      problems.push(`${it.hostPath}: is a ${ex.type}, the snapshot has a ${it.type}`);
      continue;
    }
    if (it.type === 'file' && (ex.size !== it.size || !holdsBlob(local, it.oid))) problems.push(`${it.hostPath}: content differs from the snapshot`);
    if (it.type === 'symlink' && ex.target !== it.target) problems.push(`${it.hostPath}: points to ${ex.target}, the snapshot has ${it.target}`);
    if (it.type !== 'symlink' && ex.mode !== it.mode) problems.push(`${it.hostPath}: mode ${formatMode(ex.mode)}, the snapshot has ${formatMode(it.mode)}`);
    const uid = resolver.uid(it.user, it.uid, it.hostPath);
    const gid = resolver.gid(it.group, it.gid, it.hostPath);
    if (ex.uid !== uid || ex.gid !== gid) problems.push(`${it.hostPath}: owner ${ex.uid}:${ex.gid}, expected ${uid}:${gid} (${it.user}:${it.group})`);
    const xd = xattrs?.differences(local, it.xattrs, it.hostPath, liveNames);
    if (xd) problems.push(`${it.hostPath}: extended attributes differ from the snapshot (${xd})`);
  }
  return problems;
}
