import fsp from 'node:fs/promises';
import path from 'node:path';
import { errnoOf } from '@pacha/shared/errors';

// What one authenticated host sees: a virtual filesystem holding only its own folder.
//
// The agent addresses the master with its configured pacha.hosts.path, e.g.
// /pacha/hosts/web1/repo/HEAD. A path is accepted only when it is <virtual root>/<host>/<rest>
// for one of the configured virtual roots (default /pacha/hosts); it then maps to
// <hosts-path>/<host>/<rest> on disk. The virtual root's ancestors (/, /pacha, /pacha/hosts)
// appear as read-only directories listing only the way down to the host's folder. Relative
// paths are taken from the host's folder. Anything else, other hosts included, is refused.
//
// `..` is resolved on the virtual path, before mapping; on disk, real paths (symlinks
// followed) are computed and must stay inside the host's folder.

export class Refusal extends Error {
  readonly status: 'denied' | 'missing' | 'failure';
  constructor(status: 'denied' | 'missing' | 'failure', message: string) {
    super(message);
    this.status = status;
  }
}

export type Resolved =
  | { kind: 'ancestor'; virtual: string; /** the next component toward the host's folder */ next: string }
  | { kind: 'host'; virtual: string; real: string; /** POSIX path relative to the host's folder; '' for the folder itself */ rel: string };

export class HostView {
  readonly host: string;
  readonly hostDir: string;
  readonly home: string;
  private readonly roots: string[];
  private realBase: string | null = null;

  constructor(hostsPath: string, host: string, virtualRoots: string[]) {
    this.host = host;
    this.hostDir = path.join(hostsPath, host);
    this.roots = virtualRoots.map((r) => path.posix.normalize(r).replace(/(.)\/+$/, '$1'));
    this.home = path.posix.join(this.roots[0], host);
  }

  /** The virtual absolute form of a client path ('.' and relative paths start at the host's folder). */
  virtualPath(p: string): string {
    if (p.includes('\0')) throw new Refusal('denied', 'path contains a NUL byte');
    const abs = p.startsWith('/') ? p : path.posix.join(this.home, p);
    const norm = path.posix.normalize(abs);
    return norm.length > 1 ? norm.replace(/\/+$/, '') : norm;
  }

  /** The host's folder on disk, symlinks resolved. */
  realHome(): Promise<string> {
    return this.base();
  }

  private async base(): Promise<string> {
    if (this.realBase === null) {
      try {
        this.realBase = await fsp.realpath(this.hostDir);
      } catch (e) {
        if (errnoOf(e) !== 'ENOENT') throw e;
        throw new Refusal('missing', `the folder of ${this.host} does not exist on the master (pacha-master authorize creates it)`);
      }
    }
    return this.realBase;
  }

  /**
   * Map a client path. follow=true: the last component's symlink is followed (open, stat);
   * follow=false: the last component itself is meant (lstat, remove, rename, mkdir).
   */
  async resolve(p: string, follow: boolean): Promise<Resolved> {
    const v = this.virtualPath(p);
    for (const root of this.roots) {
      const mine = root === '/' ? `/${this.host}` : `${root}/${this.host}`;
      if (v === mine || v.startsWith(mine + '/')) {
        const rest = v.slice(mine.length).replace(/^\//, '');
        const base = await this.base();
        const lexical = rest === '' ? base : path.join(base, rest);
        // The host's folder itself may be a symlink the operator made: it is the base either way.
        const real = rest === '' ? base : follow ? await realOf(lexical) : path.join(await realOf(path.dirname(lexical)), path.basename(lexical));
        const inside = real === base || real.startsWith(base + '/');
        if (!inside || (rest === '' && real !== base)) {
          throw new Refusal('denied', `${v}: leads outside the folder of ${this.host}`);
        }
        return { kind: 'host', virtual: v, real, rel: real === base ? '' : real.slice(base.length + 1) };
      }
      if (mine.startsWith(v === '/' ? '/' : v + '/')) {
        const next = mine.slice(v === '/' ? 1 : v.length + 1).split('/')[0];
        return { kind: 'ancestor', virtual: v, next };
      }
    }
    throw new Refusal('denied', `${v}: outside the folder of ${this.host} (accepted: ${this.roots.map((r) => path.posix.join(r, this.host)).join(' or ')} and below)`);
  }
}

/** realpath of a path that may not exist yet: the real path of its deepest existing ancestor + the rest. */
async function realOf(p: string): Promise<string> {
  try {
    return await fsp.realpath(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') throw e;
    const parent = path.dirname(p);
    if (parent === p) return p;
    return path.join(await realOf(parent), path.basename(p));
  }
}
