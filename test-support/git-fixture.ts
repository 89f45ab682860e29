import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { encodeMetadataV1, type MetadataEntry } from '@pacha/shared/format/entry';
import { gitMode, gitPath } from '@pacha/shared/format/names';
import { encodeRoots } from '@pacha/shared/format/snapshot';

// Snapshot repositories in format 1 built with native git plumbing (hash-object, mktree,
// commit-tree, update-ref), following docs/snapshot-format.md: tests of the rebuild do not
// depend on pacha's own writer, hostile repositories can be built just as easily, and this is
// the kept writer of format 1 that the format 1 -> 2 tests start from.

export interface FixtureFile {
  /** Host path, absolute: /etc/app/a.conf */
  path: string;
  type: 'file' | 'dir' | 'symlink';
  content?: string | Buffer;
  target?: string;
  mode?: number;
  user?: string;
  uid?: number;
  group?: string;
  gid?: number;
  mtimeNs?: bigint;
}

export interface FixtureSnapshot {
  roots: string[];
  entries: FixtureFile[];
  message?: string;
  /** Commit time (seconds since the epoch). */
  time?: number;
  /** Replace the generated .pacha/metadata text (hostile repositories). */
  metadataText?: string;
  /** Extra tree entries written as-is: path inside the tree -> content (hostile repositories). */
  extraBlobs?: Record<string, string>;
}

export function git(gitDir: string, args: string[], input?: string | Buffer, env: NodeJS.ProcessEnv = {}): string {
  return execFileSync('git', ['--git-dir', gitDir, ...args], {
    input,
    env: { ...process.env, GIT_AUTHOR_NAME: 'pacha', GIT_AUTHOR_EMAIL: 'pacha@test', GIT_COMMITTER_NAME: 'pacha', GIT_COMMITTER_EMAIL: 'pacha@test', ...env },
    maxBuffer: 256 * 1024 * 1024,
  }).toString();
}

export function initBareRepo(dir: string): void {
  fs.mkdirSync(dir, { recursive: true });
  execFileSync('git', ['init', '--bare', '-q', '-b', 'main', dir]);
}

function hashBlob(gitDir: string, content: string | Buffer): string {
  return git(gitDir, ['hash-object', '-w', '--stdin'], content).trim();
}

interface TreeNode {
  blobs: Map<string, { mode: string; oid: string }>;
  trees: Map<string, TreeNode>;
}

function newNode(): TreeNode {
  return { blobs: new Map(), trees: new Map() };
}

function insert(root: TreeNode, treePathStr: string, mode: string, oid: string): void {
  const parts = treePathStr.split('/');
  let node = root;
  for (const p of parts.slice(0, -1)) {
    let next = node.trees.get(p);
    if (!next) node.trees.set(p, (next = newNode()));
    node = next;
  }
  node.blobs.set(parts[parts.length - 1], { mode, oid });
}

function writeTree(gitDir: string, node: TreeNode): string {
  const lines: string[] = [];
  for (const [name, t] of node.trees) lines.push(`040000 tree ${writeTree(gitDir, t)}\t${name}`);
  for (const [name, b] of node.blobs) lines.push(`${b.mode} blob ${b.oid}\t${name}`);
  return git(gitDir, ['mktree', '-z'], lines.map((l) => l + '\0').join('')).trim();
}

function metadataOf(e: FixtureFile): MetadataEntry {
  const content = e.type === 'file' ? Buffer.from(e.content ?? '') : undefined;
  return {
    path: e.path.replace(/^\/+/, ''),
    type: e.type,
    mode: e.mode ?? (e.type === 'dir' ? 0o755 : e.type === 'symlink' ? 0o777 : 0o644),
    user: e.user ?? 'root',
    uid: e.uid ?? 0,
    group: e.group ?? 'root',
    gid: e.gid ?? 0,
    mtimeNs: e.mtimeNs ?? 1_700_000_000_123_456_789n,
    size: e.type === 'file' ? content!.length : e.type === 'symlink' ? Buffer.byteLength(e.target ?? '') : 0,
    target: e.type === 'symlink' ? e.target : undefined,
  };
}

/** Commit one snapshot on refs/heads/main (parent: the current main, if any). Returns the commit id. */
export function commitSnapshot(gitDir: string, snap: FixtureSnapshot): string {
  const root = newNode();
  const meta: MetadataEntry[] = [];
  for (const e of snap.entries) {
    const m = metadataOf(e);
    meta.push(m);
    if (e.type === 'file') insert(root, gitPath(m.path, 1), gitMode(m), hashBlob(gitDir, e.content ?? ''));
    else if (e.type === 'symlink') insert(root, gitPath(m.path, 1), '120000', hashBlob(gitDir, e.target ?? ''));
  }
  insert(root, '.pacha/format', '100644', hashBlob(gitDir, 'pacha-snapshot 1\n'));
  insert(root, '.pacha/roots', '100644', hashBlob(gitDir, encodeRoots(snap.roots)));
  insert(root, '.pacha/metadata', '100644', hashBlob(gitDir, snap.metadataText ?? encodeMetadataV1(meta)));
  for (const [p, c] of Object.entries(snap.extraBlobs ?? {})) insert(root, p, '100644', hashBlob(gitDir, c));
  const tree = writeTree(gitDir, root);
  let parent: string | undefined;
  try {
    parent = git(gitDir, ['rev-parse', '-q', '--verify', 'refs/heads/main'], undefined).trim();
  } catch {
    parent = undefined;
  }
  const time = snap.time ?? Math.floor(Date.now() / 1000);
  const date = `${time} +0000`;
  const commit = git(gitDir, ['commit-tree', tree, ...(parent ? ['-p', parent] : []), '-m', snap.message ?? 'snapshot'], undefined, {
    GIT_AUTHOR_DATE: date,
    GIT_COMMITTER_DATE: date,
  }).trim();
  git(gitDir, ['update-ref', 'refs/heads/main', commit]);
  return commit;
}

/** Pack the repository as a master holds it (objects/pack/*.pack + .idx), loose objects removed. */
export function packRepo(gitDir: string): void {
  git(gitDir, ['repack', '-a', '-d', '-q']);
  git(gitDir, ['prune-packed']);
}

/** A master host tree in a local folder: <hostsPath>/<host>/{repo,pacha_pre,pacha_post}. */
export function masterHostDir(hostsPath: string, host: string): { dir: string; repo: string; pre: string; post: string } {
  const dir = path.join(hostsPath, host);
  const out = { dir, repo: path.join(dir, 'repo'), pre: path.join(dir, 'pacha_pre'), post: path.join(dir, 'pacha_post') };
  fs.mkdirSync(out.pre, { recursive: true });
  fs.mkdirSync(out.post, { recursive: true });
  return out;
}

export function writeHook(dir: string, name: string, script: string): string {
  const f = path.join(dir, name);
  fs.writeFileSync(f, script, { mode: 0o644 });
  return f;
}
