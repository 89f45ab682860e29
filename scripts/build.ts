// `npm run build`: one bundled file per program for hosts without a development setup.
// dist/pacha.mjs (agent) and dist/pacha-master.mjs run with a plain Node 24: `node pacha.mjs ...`.
// The systemd units are copied next to them. esbuild-wasm has no native binary to download.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build, type Plugin } from 'esbuild-wasm';
import { ON_USE } from '../packages/shared/bin/on-use.js';
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

// The .deb's bundles are CommonJS (scripts/package.ts): Node starts a CommonJS file sooner than
// an ES module (docs/install.md has the figures). import.meta has CommonJS equivalents there.
const cjsBanner = "var __pachaImportMetaUrl = require('node:url').pathToFileURL(__filename).href;";
const cjsDefine = { 'import.meta.url': '__pachaImportMetaUrl', 'import.meta.dirname': '__dirname', 'import.meta.filename': '__filename', 'import.meta.resolve': 'undefined' };

export const PROGRAMS = [
  { name: 'pacha', entry: 'packages/agent/src/main.ts', out: 'pacha.mjs', outCjs: 'pacha.bundle.cjs' },
  { name: 'pacha-master', entry: 'packages/master/src/main.ts', out: 'pacha-master.mjs', outCjs: 'pacha-master.bundle.cjs' },
] as const;

/** Worker threads' modules, bundled beside the programs (packages/shared/src/worker-file.ts finds them). */
export const WORKERS = [
  { name: 'pack-check-worker', entry: 'packages/master/src/pack-check-worker.ts' },
  { name: 'pack-stream-worker', entry: 'packages/master/src/pack-stream-worker.ts' },
  { name: 'pack-arrival-worker', entry: 'packages/shared/src/git/pack-arrival-worker.ts' },
] as const;

/** A worker's bundle file name in `format`. */
export function workerBundle(name: string, format: BundleFormat): string {
  return format === 'esm' ? `${name}.mjs` : `${name}.bundle.cjs`;
}

export type BundleFormat = 'esm' | 'cjs';

/**
 * Bundle both programs into `dist` (scripts/package.ts reuses this for the .deb). Returns the
 * files each bundle was made of, relative to the repository (the .deb's copyright file lists
 * the npm packages among them).
 */
export async function bundlePrograms(dist: string, log: (line: string) => void = (l) => process.stdout.write(`${l}\n`), format: BundleFormat = 'esm'): Promise<string[]> {
  fs.mkdirSync(dist, { recursive: true });
  const inputs = new Set<string>();
  for (const p of PROGRAMS) {
    const out = path.join(dist, format === 'esm' ? p.out : p.outCjs);
    for (const i of await bundleOne(p.entry, out, format)) inputs.add(i);
    log(`built ${out} (${Math.round(fs.statSync(out).size / 1024)} KiB)`);
  }
  for (const w of WORKERS) {
    for (const i of await bundleOne(w.entry, path.join(dist, workerBundle(w.name, format)), format)) inputs.add(i);
  }
  // koffi's native module (extended attributes, packages/shared/src/xattr/native.ts) cannot be inside
  // the bundle: it is loaded from beside it.
  const koffi = npmBinaries().find((f) => fs.existsSync(f));
  if (koffi) fs.copyFileSync(koffi, path.join(dist, 'koffi.node'));
  else log('warning: koffi.node not found: the bundle will record no extended attributes');
  return [...inputs].sort();
}

/** The launchers' stand-ins (packages/shared/bin/on-use.js), bundled in place of what they load on first use. */
const onUse: Plugin = {
  name: 'on-use',
  setup(b) {
    const standIns = new Set(Object.values(ON_USE).map((u) => fileURLToPath(u)));
    // Package names: letters, digits and `-`, nothing a regular expression reads otherwise.
    const filter = new RegExp(`^(${Object.keys(ON_USE).join('|')})$`);
    // The stand-in's own require() reaches the real module.
    b.onResolve({ filter }, (args) => (standIns.has(args.importer) ? undefined : { path: fileURLToPath(ON_USE[args.path]) }));
  },
};

async function bundleOne(entry: string, outfile: string, format: BundleFormat): Promise<string[]> {
  const result = await build({
    entryPoints: [path.join(repo, entry)],
    outfile,
    bundle: true,
    platform: 'node',
    format,
    target: 'node24',
    ...(format === 'esm' ? { banner: { js: `#!/usr/bin/env node\n${banner}` } } : { banner: { js: cjsBanner }, define: cjsDefine }),
    // Optional native accelerators of ssh2: absent in the bundle, ssh2 falls back to pure JS.
    external: ['cpu-features', '*.node'],
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
    absWorkingDir: repo,
    plugins: [onUse],
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
