import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import ssh2 from 'ssh2';
import type { ClientChannel, SFTPWrapper } from 'ssh2';
import { PachaError } from '../packages/shared/src/errors.ts';
import { hashObject } from '../packages/shared/src/git/objects.ts';
import { PackReader } from '../packages/shared/src/git/pack-reader.ts';
import { PackScanner } from '../packages/shared/src/git/pack-scan.ts';
import { Repository, initRepo } from '../packages/shared/src/git/repository.ts';
import { serializeTree } from '../packages/shared/src/git/tree.ts';
import { commitBytes, craftPack, placePack, type CraftedPack } from './craft-pack.ts';
import type { MasterHandle } from './master.ts';

// Fuzzing with fast-check (scripts/fuzz-master.ts runs it for a bounded time; a short smoke run
// is part of the master's tests): random and mutated packs and indexes thrown at the object
// reader, and random and mutated SFTP packets, packs and indexes thrown at the embedded master.
// What must hold: the reader answers with the true object or a typed error (never another
// exception, never a lie, a good copy elsewhere always found); a pack checked as it arrives
// (PackScanner, then the index matched) gets the same verdict as one verified whole; the master stays up, writes
// nothing outside the host's allowlist, and its repository stays valid for native git.

export interface FuzzStats {
  inputs: number;
  /** Reader: mutated packs that still verified. Master: requests or renames it accepted. */
  accepted: number;
}

export interface FuzzLimits {
  /** Stop after this many inputs... */
  runs: number;
  /** ...or at this time (Date.now() ms), whichever comes first. */
  until?: number;
  seed?: number;
}

/** A small honest history (blob, tree, three commits) in one pack. */
function honestPack(): { pack: CraftedPack; objects: Map<string, Buffer> } {
  const blob = Buffer.from('fuzz\n'.repeat(40));
  const tree = serializeTree([{ name: 'f', mode: '100644', oid: hashObject('blob', blob) }]);
  const treeId = hashObject('tree', tree);
  const c1 = commitBytes(treeId, [], 1_700_000_000);
  const c2 = commitBytes(treeId, [hashObject('commit', c1)], 1_700_000_100);
  const entries = [
    { type: 'blob' as const, content: blob },
    { type: 'tree' as const, content: tree },
    { type: 'commit' as const, content: c1 },
    { type: 'commit' as const, content: c2 },
  ];
  return { pack: craftPack(entries), objects: new Map(entries.map((e) => [hashObject(e.type, e.content), e.content])) };
}

/** Mutations of a file: flipped bytes, a truncation, an extension, or all random. */
const mutation = fc.oneof(
  fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }).map((flips) => (b: Buffer) => {
    const out = Buffer.from(b);
    for (const [pos, v] of flips) if (out.length > 0) out[pos % out.length] = v;
    return out;
  }),
  fc.nat().map((n) => (b: Buffer) => b.subarray(0, b.length === 0 ? 0 : n % b.length)),
  fc.uint8Array({ maxLength: 64 }).map((extra) => (b: Buffer) => Buffer.concat([b, Buffer.from(extra)])),
  fc.uint8Array({ maxLength: 2048 }).map((bytes) => () => Buffer.from(bytes)),
);

const TYPED = (e: unknown) => e instanceof PachaError;

function runOptions(limits: FuzzLimits): fc.Parameters<unknown> {
  const left = limits.until === undefined ? undefined : Math.max(1, limits.until - Date.now());
  return { numRuns: limits.runs, seed: limits.seed, interruptAfterTimeLimit: left, markInterruptAsFailure: false };
}

/** Mutated packs and indexes beside an honest copy: the reader must still read the truth. */
export async function fuzzReader(limits: FuzzLimits): Promise<FuzzStats> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-fuzz-reader-'));
  const stats: FuzzStats = { inputs: 0, accepted: 0 };
  const { pack, objects } = honestPack();
  try {
    await fc.assert(
      fc.asyncProperty(mutation, mutation, fc.boolean(), fc.integer({ min: 1, max: 4096 }), async (mp, mi, withHonest, piece) => {
        if (limits.until !== undefined && Date.now() > limits.until) return true;
        stats.inputs++;
        const repo = path.join(dir, 'repo');
        initRepo(repo);
        try {
          const bad: CraftedPack = { ...pack, pack: mp(pack.pack), idx: mi(pack.idx) };
          // Named to be searched first.
          const badFile = placePack(repo, bad, `pack-${'0'.repeat(40)}`);
          if (withHonest) placePack(repo, pack);
          const store = new Repository(repo);
          try {
            for (const [oid, content] of objects) {
              let got: Buffer | undefined;
              try {
                got = store.tryRead(oid)?.content;
              } catch (e) {
                if (withHonest || !TYPED(e)) throw e;
              }
              if (got !== undefined && !got.equals(content)) throw new Error(`read ${oid} as other content`);
              if (withHonest && got === undefined) throw new Error(`lost ${oid} with a good copy present`);
            }
          } finally {
            store.close();
          }
          let reader: PackReader | undefined;
          try {
            reader = new PackReader(badFile);
          } catch (e) {
            if (!TYPED(e)) throw e;
          }
          if (reader) {
            try {
              const whole = await reader.verify();
              if (whole.length === 0) stats.accepted++;
              // The master's way for an upload: scanned as it arrives (in pieces), then matched with the index.
              const scanner = new PackScanner();
              for (let pos = 0; pos < bad.pack.length; pos += piece) scanner.push(Buffer.from(bad.pack.subarray(pos, pos + piece)));
              scanner.end();
              let scanned = reader.verifyWhole();
              if (scanned.length === 0) {
                const m = reader.matchScanned(scanner.result());
                scanned = m.problems.length > 0 ? m.problems : await reader.verifyEntries({}, m.from);
              }
              if ((whole.length === 0) !== (scanned.length === 0)) throw new Error(`verified whole: ${whole[0] ?? 'ok'}; scanned: ${scanned[0] ?? 'ok'}`);
            } catch (e) {
              if (!TYPED(e)) throw e;
            } finally {
              reader.close();
            }
          }
        } finally {
          fs.rmSync(path.join(repo, 'objects/pack'), { recursive: true, force: true });
          fs.mkdirSync(path.join(repo, 'objects/pack'));
        }
        return true;
      }),
      runOptions(limits),
    );
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return stats;
}

// ---- the master ----

const SFTP_TYPES = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 200];

function sftpString(s: Buffer | string): Buffer {
  const b = Buffer.isBuffer(s) ? s : Buffer.from(s);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(b.length);
  return Buffer.concat([len, b]);
}

function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

/** Paths an attacker tries: its own tree and the allowlist's names, other hosts, escapes. */
function pathArb(host: string): fc.Arbitrary<string> {
  const R = `/pacha/hosts/${host}/repo`;
  return fc.oneof(
    fc.constantFrom(
      `${R}/HEAD`, `${R}/config`, `${R}/refs/heads/main`, `${R}/refs/heads/.main.tmp-f`, `${R}/objects/pack/tmp_pack_f`, `${R}/objects/pack/tmp_idx_f`,
      `${R}/objects/pack`, `${R}/objects`, `${R}/pacha-push.lock`, `${R}/commondir`, `${R}/objects/info/alternates`, `/pacha/hosts/${host}/pacha_pre/10-x`,
      `/pacha/hosts/other/repo/HEAD`, `${R}/../../other/repo/x`, '/etc/passwd', '../../../../etc/shadow', '.', '/', `${R}/.HEAD.tmp-f`, `${R}/.config.tmp-f`,
    ),
    fc.string({ maxLength: 40 }).map((s) => `${R}/${s}`),
    fc.string({ maxLength: 80 }),
  );
}

/** One SFTP request packet, well-formed in its framing, random in its content; or random bytes. */
function packetArb(host: string): fc.Arbitrary<Buffer> {
  const str = fc.oneof(pathArb(host).map((s) => Buffer.from(s)), fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)));
  const body = fc.tuple(fc.constantFrom(...SFTP_TYPES, 0, 1, 2, 99, 255), fc.nat(), fc.array(fc.oneof(str.map(sftpString), fc.nat().map(u32), fc.uint8Array({ maxLength: 16 }).map((b) => Buffer.from(b))), { maxLength: 5 }))
    .map(([type, id, fields]) => Buffer.concat([Buffer.from([type]), u32(id), ...fields]));
  return fc.oneof(
    { weight: 8, arbitrary: body.map((b) => Buffer.concat([u32(b.length), b])) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 256 }).map((b) => Buffer.from(b)) },
  );
}

const closedConns = new WeakSet<ssh2.Client>();

async function connect(m: MasterHandle, host: string): Promise<ssh2.Client> {
  const conn = new ssh2.Client();
  conn.setMaxListeners(0);
  conn.on('close', () => closedConns.add(conn));
  await new Promise<void>((resolve, reject) => {
    conn.once('error', reject);
    conn.once('ready', () => resolve());
    conn.connect({ host: '127.0.0.1', port: m.port, username: host, privateKey: fs.readFileSync(m.keyFor(host)) });
  });
  conn.on('error', () => {});
  return conn;
}

function rawSftp(conn: ssh2.Client): Promise<ClientChannel> {
  return new Promise((resolve, reject) => conn.subsys('sftp', (err, ch) => (err ? reject(err) : resolve(ch))));
}

function sftpOf(conn: ssh2.Client): Promise<SFTPWrapper> {
  return new Promise((resolve, reject) => conn.sftp((err, s) => (err ? reject(err) : resolve(s))));
}

/** Everything under dir except the host's own folder: must not change. */
function outsideListing(hostsPath: string, host: string): string {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (p === path.join(hostsPath, host)) continue;
      const st = fs.lstatSync(p);
      out.push(`${p} ${st.mode} ${st.size} ${st.mtimeMs}`);
      if (e.isDirectory()) walk(p);
    }
  };
  walk(path.dirname(hostsPath));
  return out.sort().join('\n');
}

/** Files in the host's folder that are not on the allowlist or part of a git repository. */
function strayFiles(hostDir: string): string[] {
  const out: string[] = [];
  const ok = /^(?:repo(?:\/(?:HEAD|config|description|packed-refs|pacha-push\.lock|\.HEAD\.tmp-.+|\.config\.tmp-.+|refs(?:\/heads(?:\/(?:main|\.main\.tmp-.+))?|\/tags)?|objects(?:\/pack(?:\/(?:pack-[0-9a-f]{40}\.(?:pack|idx)|tmp_(?:pack|idx)_.+))?)?|info(?:\/exclude)?|hooks(?:\/.+)?|branches))?|pacha_pre(?:\/.+)?|pacha_post(?:\/.+)?)$/;
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      if (!ok.test(r)) out.push(r);
      if (e.isDirectory()) walk(path.join(d, e.name), r);
    }
  };
  walk(hostDir, '');
  return out;
}

/**
 * Random and mutated SFTP packets on raw channels, and mutated packs and indexes uploaded and
 * renamed, against a running master whose `host` has pushed already. Checks after every input
 * that nothing outside the allowlist changed; at the end that the master still serves and the
 * repository passes git fsck --strict with main unchanged or forward.
 */
export async function fuzzMaster(m: MasterHandle, host: string, limits: FuzzLimits): Promise<FuzzStats> {
  const stats: FuzzStats = { inputs: 0, accepted: 0 };
  const repo = path.join(m.hostDir(host), 'repo');
  const mainBefore = fs.readFileSync(path.join(repo, 'refs/heads/main'), 'utf8').trim();
  const outside = outsideListing(m.hostsPath, host);
  const packName = fs.readdirSync(path.join(repo, 'objects/pack')).find((n) => n.endsWith('.pack'))!;
  const realPack = fs.readFileSync(path.join(repo, 'objects/pack', packName));
  const realIdx = fs.readFileSync(path.join(repo, 'objects/pack', packName.replace('.pack', '.idx')));
  const R = `/pacha/hosts/${host}/repo`;
  let conn = await connect(m, host);
  /** A channel on the connection; when the master has closed it (a protocol error), on a new one it must accept. */
  const live = async <T>(open: (c: ssh2.Client) => Promise<T>): Promise<T> => {
    try {
      if (closedConns.has(conn)) throw new Error('closed');
      return await open(conn);
    } catch {
      conn.end();
      conn = await connect(m, host);
      return open(conn);
    }
  };
  const input = fc.oneof(
    { weight: 3, arbitrary: fc.array(packetArb(host), { minLength: 1, maxLength: 12 }).map((packets) => ({ kind: 'packets' as const, packets })) },
    { weight: 1, arbitrary: fc.tuple(mutation, mutation).map(([mp, mi]) => ({ kind: 'pack' as const, mp, mi })) },
  );
  try {
    await fc.assert(
      fc.asyncProperty(input, async (x) => {
        if (limits.until !== undefined && Date.now() > limits.until) return true;
        stats.inputs++;
        if (x.kind === 'packets') {
          const ch = await live(rawSftp);
          // A last request the master must answer (REALPATH with a marked id): it is still serving.
          const MARK = 0x7ffe1234;
          const want = Buffer.concat([Buffer.from([104]), u32(MARK)]);
          let seen = Buffer.alloc(0);
          const answered = new Promise<void>((resolve) => {
            ch.on('data', (d: Buffer) => {
              seen = Buffer.concat([seen.subarray(-16), d]);
              if (seen.includes(want)) resolve();
            });
            // A packet left incomplete on purpose swallows the mark: give up waiting, not a failure.
            setTimeout(resolve, 1000).unref();
          });
          ch.stderr.on('data', () => {});
          // The channel closes, or the master drops the whole connection (ssh2 does on a malformed packet).
          const c = conn;
          const closed = new Promise<void>((resolve) => {
            ch.once('close', () => resolve());
            c.once('close', () => resolve());
            if (closedConns.has(c)) resolve();
          });
          ch.write(Buffer.concat([u32(5), Buffer.from([1]), u32(3)])); // INIT, version 3
          for (const p of x.packets) ch.write(p);
          const mark = Buffer.concat([Buffer.from([16]), u32(MARK), sftpString('.')]);
          ch.write(Buffer.concat([u32(mark.length), mark]));
          await Promise.race([answered, closed]);
          ch.close();
          // A channel left inside a half-sent packet may not close: drop the connection then.
          const late = setTimeout(() => c.end(), 1000);
          await closed;
          clearTimeout(late);
        } else {
          const s = await live(sftpOf);
          const put = (p: string, data: Buffer) =>
            new Promise<void>((resolve, reject) => s.writeFile(p, data, (e) => (e ? reject(e) : resolve())));
          const rename = (a: string, b: string) => new Promise<boolean>((resolve) => s.rename(a, b, (e) => resolve(!e)));
          const pack = x.mp(realPack);
          const idx = x.mi(realIdx);
          const sha = pack.length >= 20 ? pack.subarray(pack.length - 20).toString('hex') : '0'.repeat(40);
          await put(`${R}/objects/pack/tmp_pack_fz`, pack);
          await put(`${R}/objects/pack/tmp_idx_fz`, idx);
          if (await rename(`${R}/objects/pack/tmp_pack_fz`, `${R}/objects/pack/pack-${sha}.pack`)) stats.accepted++;
          if (await rename(`${R}/objects/pack/tmp_idx_fz`, `${R}/objects/pack/pack-${sha}.idx`)) stats.accepted++;
          await new Promise<void>((resolve) => s.unlink(`${R}/objects/pack/tmp_pack_fz`, () => resolve()));
          await new Promise<void>((resolve) => s.unlink(`${R}/objects/pack/tmp_idx_fz`, () => resolve()));
          s.end();
        }
        if (outsideListing(m.hostsPath, host) !== outside) throw new Error('something outside the host folder changed');
        const stray = strayFiles(m.hostDir(host));
        if (stray.length > 0) throw new Error(`files off the allowlist appeared: ${stray.join(', ')}`);
        return true;
      }),
      runOptions(limits),
    );
  } finally {
    conn.end();
  }
  // Still serving, still valid.
  const check = await connect(m, host);
  const s = await sftpOf(check);
  await new Promise<void>((resolve, reject) => s.stat(`${R}/HEAD`, (e) => (e ? reject(e) : resolve())));
  check.end();
  execFileSync('git', ['--git-dir', repo, 'fsck', '--full', '--strict'], { stdio: 'pipe' });
  const mainAfter = fs.readFileSync(path.join(repo, 'refs/heads/main'), 'utf8').trim();
  if (mainAfter !== mainBefore) {
    const chain = execFileSync('git', ['--git-dir', repo, 'rev-list', '--first-parent', mainAfter], { encoding: 'utf8' }).split('\n');
    if (!chain.includes(mainBefore)) throw new Error(`main moved from ${mainBefore} to ${mainAfter}, not forward`);
  }
  return stats;
}
