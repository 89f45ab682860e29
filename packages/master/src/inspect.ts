import fs from 'node:fs';
import path from 'node:path';
import { PachaError, UsageError, errnoOf, errorMessage } from '@pacha/shared/errors';
import { PackReader } from '@pacha/shared/git/pack-reader';
import { CorruptObjectError, RepoObjects, parseCommit, readRefIn, type CommitInfo } from '@pacha/shared/git/object-store';
import { encodeFields, escapeField } from '@pacha/shared/format/entry';
import { gitPath } from '@pacha/shared/format/names';
import { checkHostName, masterHostPaths } from '@pacha/shared/master-tree';
import { readEntry, readPachaDir, type TreeSource } from '@pacha/shared/format/snapshot';

// The master's view of its host tree, read locally (no SFTP): what `pacha-master hosts`, `log`,
// `show` and `verify` print. Everything here only reads.

export interface HostSummary {
  name: string;
  /** Commit refs/heads/main points at, or null before the first push. */
  head: string | null;
  /** Commit time of the last snapshot (ISO), or null. */
  lastSnapshot: string | null;
  commits: number;
  /** Bytes on disk of the host's repository. */
  size: number;
  error?: string;
}

export interface LogEntry {
  commit: string;
  time: string;
  parents: string[];
  message: string;
}

function hostRepo(hostsPath: string, host: string): string {
  const repo = masterHostPaths(hostsPath, checkHostName(host)).repo;
  if (!fs.existsSync(path.join(hostsPath, host))) {
    throw new PachaError(`no host ${host} under ${hostsPath}`, { hint: 'pacha-master hosts lists the hosts this master holds' });
  }
  return repo;
}

function dirSize(dir: string): number {
  let total = 0;
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) total += dirSize(p);
    else if (e.isFile()) total += fs.statSync(p).size;
  }
  return total;
}

/** Commits reachable from head, newest first (parents after children; by commit time on merges). */
function walkCommits(store: RepoObjects, head: string): (CommitInfo & { oid: string })[] {
  const out: (CommitInfo & { oid: string })[] = [];
  const seen = new Set<string>([head]);
  const queue = [head];
  while (queue.length > 0) {
    const oid = queue.shift()!;
    const c = store.readCommit(oid);
    out.push({ ...c, oid });
    for (const p of c.parents) {
      if (!seen.has(p)) {
        seen.add(p);
        queue.push(p);
      }
    }
  }
  return out;
}

export function listHosts(hostsPath: string): HostSummary[] {
  let names: string[];
  try {
    names = fs.readdirSync(hostsPath, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
  } catch (e) {
    throw new PachaError(`cannot read the hosts folder ${hostsPath}: ${errorMessage(e)}`, { hint: 'name it with --hosts-path DIR' });
  }
  return names.map((name) => {
    const repo = masterHostPaths(hostsPath, name).repo;
    const summary: HostSummary = { name, head: null, lastSnapshot: null, commits: 0, size: dirSize(repo) };
    const store = new RepoObjects(repo);
    try {
      summary.head = fs.existsSync(path.join(repo, 'HEAD')) ? store.readRef('refs/heads/main') : null;
      if (summary.head) {
        const commits = walkCommits(store, summary.head);
        summary.commits = commits.length;
        summary.lastSnapshot = new Date(commits[0].time * 1000).toISOString();
      }
    } catch (e) {
      summary.error = errorMessage(e);
    } finally {
      store.close();
    }
    return summary;
  });
}

export function hostLog(hostsPath: string, host: string, limit?: number): LogEntry[] {
  const store = new RepoObjects(hostRepo(hostsPath, host));
  try {
    const head = store.readRef('refs/heads/main');
    if (!head) return [];
    const all = walkCommits(store, head);
    return (limit ? all.slice(0, limit) : all).map((c) => ({
      commit: c.oid,
      time: new Date(c.time * 1000).toISOString(),
      parents: c.parents,
      message: c.message.trimEnd(),
    }));
  } finally {
    store.close();
  }
}

/** A commit (full id or unique prefix of at least 4 hex digits) or the last snapshot at or before an ISO time. */
export function resolveAt(store: RepoObjects, head: string, at: string | undefined): string {
  if (at === undefined || at === '') return head;
  const commits = walkCommits(store, head);
  if (/^[0-9a-f]{4,40}$/i.test(at)) {
    const hits = commits.filter((c) => c.oid.startsWith(at.toLowerCase()));
    if (hits.length === 1) return hits[0].oid;
    if (hits.length > 1) throw new UsageError(`--at ${at} matches ${hits.length} snapshots: give more digits`);
  }
  const t = Date.parse(at);
  if (Number.isNaN(t)) throw new UsageError(`--at ${at}: no such snapshot (accepted: a commit id or prefix from pacha-master log, or an ISO time like 2024-05-01T12:00:00Z)`);
  const found = commits.filter((c) => c.time * 1000 <= t).sort((a, b) => b.time - a.time)[0];
  if (!found) throw new PachaError(`no snapshot at or before ${at} (the first is from ${new Date(commits[commits.length - 1].time * 1000).toISOString()})`);
  return found.oid;
}

/** Walk a tree path (already in git names) to its entry. */
function lookupPath(store: RepoObjects, tree: string, gitRel: string): { mode: string; oid: string } | undefined {
  let cur = { mode: '40000', oid: tree };
  for (const part of gitRel.split('/').filter((p) => p.length > 0)) {
    if (cur.mode !== '40000') return undefined;
    const e = store.readTree(cur.oid).find((x) => x.name === part);
    if (!e) return undefined;
    cur = e;
  }
  return cur;
}

export interface ShownFile {
  commit: string;
  time: string;
  /** File content, or the target for a symlink. */
  content: Buffer;
  type: 'file' | 'symlink';
  /** The path's metadata record as one line, path first, when present. */
  metadata?: string;
}

export function showFile(hostsPath: string, host: string, hostAbs: string, at?: string): ShownFile {
  if (!hostAbs.startsWith('/')) throw new UsageError(`${hostAbs}: give the absolute path the file had on the host (e.g. /etc/nginx/nginx.conf)`);
  const store = new RepoObjects(hostRepo(hostsPath, host));
  try {
    const head = store.readRef('refs/heads/main');
    if (!head) throw new PachaError(`${host} has no snapshot yet`);
    const commit = resolveAt(store, head, at);
    const info = store.readCommit(commit);
    const rel = path.posix.normalize(hostAbs).replace(/^\/+/, '');
    const source: TreeSource = { readTree: (oid) => store.readTree(oid), readBlob: (oid) => store.read(oid).content };
    const entry = lookupPath(store, info.tree, gitPath(rel, readPachaDir(source, info.tree).version));
    if (!entry) throw new PachaError(`${hostAbs} is not in ${host}'s snapshot ${commit.slice(0, 12)}`);
    if (entry.mode === '40000') throw new PachaError(`${hostAbs} is a directory in that snapshot: name a file`);
    // A record that does not parse is damage worth seeing: readEntry throws then.
    const record = readEntry(source, info.tree, rel);
    const metadata = record === null ? undefined : `${escapeField(rel)}\t${encodeFields(record)}`;
    return {
      commit,
      time: new Date(info.time * 1000).toISOString(),
      content: store.read(entry.oid).content,
      type: entry.mode === '120000' ? 'symlink' : 'file',
      metadata,
    };
  } finally {
    store.close();
  }
}

export interface VerifyReport {
  host: string;
  ok: boolean;
  head: string | null;
  packs: number;
  objects: number;
  problems: string[];
}

/**
 * Check one host's repository without native git: HEAD and the ref resolve; every pack's
 * checksum, index and CRCs agree; every object reachable from the ref is present and hashes to
 * its id; trees and commits parse.
 */
export function verifyHost(hostsPath: string, host: string): VerifyReport {
  const repo = hostRepo(hostsPath, host);
  const report: VerifyReport = { host, ok: false, head: null, packs: 0, objects: 0, problems: [] };
  const problem = (m: string) => report.problems.push(m);
  if (!fs.existsSync(repo)) {
    problem(`${repo}: no repository (the host never pushed)`);
    return report;
  }
  try {
    const headText = fs.readFileSync(path.join(repo, 'HEAD'), 'utf8');
    if (headText.trim() !== 'ref: refs/heads/main') problem(`${repo}/HEAD: "${headText.trim()}", expected "ref: refs/heads/main"`);
  } catch (e) {
    problem(`${repo}/HEAD: ${errorMessage(e)}`);
  }
  const packDir = path.join(repo, 'objects', 'pack');
  let names: string[] = [];
  try {
    names = fs.readdirSync(packDir);
  } catch (e) {
    if (errnoOf(e) !== 'ENOENT') problem(`${packDir}: ${errorMessage(e)}`); // else no packs yet
  }
  for (const n of names.filter((x) => x.endsWith('.pack')).sort()) {
    const idx = n.slice(0, -5) + '.idx';
    if (!names.includes(idx)) {
      problem(`${packDir}/${n}: has no .idx`);
      continue;
    }
    report.packs++;
    try {
      const r = new PackReader(path.join(packDir, n));
      try {
        for (const p of r.verify()) problem(p);
        const want = n.slice(5, -5);
        if (/^[0-9a-f]{40}$/.test(want) && r.packChecksumInIdx !== want) problem(`${packDir}/${n}: named ${want} but its checksum is ${r.packChecksumInIdx}`);
      } finally {
        r.close();
      }
    } catch (e) {
      problem(`${packDir}/${n}: ${errorMessage(e)}`);
    }
  }
  for (const n of names.filter((x) => x.endsWith('.idx'))) {
    if (!names.includes(n.slice(0, -4) + '.pack')) problem(`${packDir}/${n}: index without its pack`);
  }
  let head: string | null = null;
  try {
    // No ref yet is a host whose first push has not completed: nothing to check, nothing damaged.
    head = readRefIn(repo, 'refs/heads/main');
  } catch (e) {
    problem(errorMessage(e));
  }
  report.head = head;
  if (head !== null) checkReachable(repo, head, report, problem);
  report.ok = report.problems.length === 0;
  return report;
}

function checkReachable(repo: string, head: string, report: VerifyReport, problem: (m: string) => void): void {
  const store = new RepoObjects(repo);
  try {
    store.packReaders();
  } catch (e) {
    problem(`cannot open the packs of ${repo}: ${errorMessage(e)}`);
    return;
  }
  const seen = new Set<string>();
  // [oid, expected type, what refers to it]
  const stack: [string, string, string][] = [[head, 'commit', 'refs/heads/main']];
  try {
    while (stack.length > 0) {
      const [oid, want, from] = stack.pop()!;
      if (seen.has(oid)) continue;
      seen.add(oid);
      let obj;
      try {
        obj = store.tryRead(oid);
      } catch (e) {
        if (e instanceof CorruptObjectError && e.idMismatch) problem(`object ${oid} (${want} of ${from}) does not hash to its id: corrupt`);
        else problem(`object ${oid} (${want} of ${from}) cannot be read: ${errorMessage(e)}`);
        continue;
      }
      if (!obj) {
        problem(`object ${oid} (${want} of ${from}) is missing`);
        continue;
      }
      report.objects++;
      // tryRead has checked the content against its id.
      if (obj.type !== want) problem(`object ${oid} (of ${from}) is a ${obj.type}, expected a ${want}`);
      try {
        if (obj.type === 'commit') {
          const c = parseCommit(obj.content);
          stack.push([c.tree, 'tree', `commit ${oid.slice(0, 12)}:`]);
          for (const p of c.parents) stack.push([p, 'commit', `commit ${oid.slice(0, 12)}`]);
        } else if (obj.type === 'tree') {
          for (const e of store.readTree(oid)) {
            if (e.mode === '160000') continue;
            stack.push([e.oid, e.mode === '40000' ? 'tree' : 'blob', `${from}${from.endsWith(':') ? '' : '/'}${e.name}`]);
          }
        }
      } catch (e) {
        problem(`object ${oid} (${want} of ${from}) does not parse: ${errorMessage(e)}`);
      }
    }
  } finally {
    store.close();
  }
}
