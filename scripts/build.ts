// `npm run build`: one bundled file per program for hosts without a development setup.
// dist/pacha.mjs (agent) and dist/pacha-master.mjs run with a plain Node 24: `node pacha.mjs ...`.
// The systemd units are copied next to them. esbuild-wasm has no native binary to download.
import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild-wasm';
import { npmBinaries } from '@pacha/shared/xattr/native';

const repo = path.resolve(import.meta.dirname, '..');

// ESM output still has CommonJS dependencies (ssh2, yargs parts): give them a real `require`,
// `__filename` and `__dirname`.
const banner = [
  "import { createRequire as __pachaCreateRequire } from 'node:module';",
  'const require = __pachaCreateRequire(import.meta.url);',
  "import { fileURLToPath as __pachaFileURLToPath } from 'node:url';",
  'const __filename = __pachaFileURLToPath(import.meta.url);',
  "const __dirname = __filename.slice(0, __filename.lastIndexOf('/'));",
].join('\n');

export const PROGRAMS = [
  { name: 'pacha', entry: 'packages/agent/src/main.ts', out: 'pacha.mjs' },
  { name: 'pacha-master', entry: 'packages/master/src/main.ts', out: 'pacha-master.mjs' },
] as const;

/**
 * Bundle both programs into `dist` (scripts/package.ts reuses this for the .deb). Returns the
 * files each bundle was made of, relative to the repository (the .deb's copyright file lists
 * the npm packages among them).
 */
export async function bundlePrograms(dist: string, log: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): Promise<string[]> {
  fs.mkdirSync(dist, { recursive: true });
  const inputs = new Set<string>();
  for (const p of PROGRAMS) {
    for (const i of await bundleOne(p.entry, path.join(dist, p.out))) inputs.add(i);
    log(`built ${path.join(dist, p.out)} (${Math.round(fs.statSync(path.join(dist, p.out)).size / 1024)} KiB)`);
  }
  // koffi's native module (extended attributes, packages/shared/src/xattr/native.ts) cannot be inside
  // the bundle: it is loaded from beside it.
  const koffi = npmBinaries().find((f) => fs.existsSync(f));
  if (koffi) fs.copyFileSync(koffi, path.join(dist, 'koffi.node'));
  else log('warning: koffi.node not found: the bundle will record no extended attributes');
  return [...inputs].sort();
}

async function bundleOne(entry: string, outfile: string): Promise<string[]> {
  const result = await build({
    entryPoints: [path.join(repo, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node24',
    banner: { js: `#!/usr/bin/env node\n${banner}` },
    // Optional native accelerators of ssh2: absent in the bundle, ssh2 falls back to pure JS.
    external: ['cpu-features', '*.node'],
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
    absWorkingDir: repo,
  });
  fs.chmodSync(outfile, 0o755);
  return Object.keys(result.metafile.inputs);
}

export const UNIT_FILES = ['packages/agent/pacha.service', 'packages/master/pacha-master.service'];

if (import.meta.main) {
  // `--out DIR` builds elsewhere (the tests build into a temporary folder).
  const outArg = process.argv.indexOf('--out');
  const dist = outArg > 0 ? path.resolve(process.argv[outArg + 1]) : path.join(repo, 'dist');
  await bundlePrograms(dist);
  for (const unit of UNIT_FILES) {
    const src = path.join(repo, unit);
    if (fs.existsSync(src)) fs.copyFileSync(src, path.join(dist, path.basename(unit)));
  }
}
