import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runPacha, type RunOptions, type RunResult } from './cli.ts';

// A whole fake host inside a temporary folder: PACHA_ROOT_DIR points at it, its
// /etc/pacha.conf is written from the given keys, and helpers run `pacha` against it.

export interface TestHost {
  root: string;
  name: string;
  env: NodeJS.ProcessEnv;
  /** Local path of a host path: p('/etc/x') -> <root>/etc/x. */
  p(hostAbs: string): string;
  writeConfig(keys: Record<string, string | number>): void;
  pacha(args: string[], opts?: RunOptions): Promise<RunResult>;
  cleanup(): void;
}

export function makeTestHost(opts: { name?: string; config?: Record<string, string | number>; tmpDir?: string } = {}): TestHost {
  const root = fs.mkdtempSync(path.join(opts.tmpDir ?? os.tmpdir(), 'pacha-host-'));
  const name = opts.name ?? 'testhost';
  const env: NodeJS.ProcessEnv = { PACHA_ROOT_DIR: root, PACHA_CONFIG: '', HOME: '/root' };
  const p = (hostAbs: string) => path.join(root, hostAbs);
  const writeConfig = (keys: Record<string, string | number>) => {
    fs.mkdirSync(p('/etc'), { recursive: true });
    const lines = ['[DEFAULT]', ...Object.entries({ 'pacha.hostname': name, ...keys }).map(([k, v]) => `${k} = ${v}`)];
    fs.writeFileSync(p('/etc/pacha.conf'), lines.join('\n') + '\n');
  };
  writeConfig(opts.config ?? {});
  return {
    root,
    name,
    env,
    p,
    writeConfig,
    pacha: (args, o = {}) => runPacha(args, { ...o, env: { ...env, ...o.env } }),
    cleanup: () => fs.rmSync(root, { recursive: true, force: true }),
  };
}
