// `npm run build`: one bundled file per program for hosts without a development setup.
// dist/pacha.mjs (agent) and dist/pacha-master.mjs run with a plain Node 24: `node pacha.mjs ...`.
// The systemd units are copied next to them. esbuild-wasm has no native binary to download.
import fs from 'node:fs';
import path from 'node:path';
import { build } from 'esbuild-wasm';
import { npmBinaries } from '../packages/shared/src/xattr/native.ts';

const repo = path.resolve(import.meta.dirname, '..');
// `--out DIR` builds elsewhere (the tests build into a temporary folder).
const outArg = process.argv.indexOf('--out');
const dist = outArg > 0 ? path.resolve(process.argv[outArg + 1]) : path.join(repo, 'dist');
fs.mkdirSync(dist, { recursive: true });

// ESM output still has CommonJS dependencies (ssh2, yargs parts): give them a real `require`,
// `__filename` and `__dirname`.
const banner = [
  "import { createRequire as __pachaCreateRequire } from 'node:module';",
  'const require = __pachaCreateRequire(import.meta.url);',
  "import { fileURLToPath as __pachaFileURLToPath } from 'node:url';",
  'const __filename = __pachaFileURLToPath(import.meta.url);',
  "const __dirname = __filename.slice(0, __filename.lastIndexOf('/'));",
].join('\n');

const programs = [
  { entry: 'packages/agent/src/main.ts', out: 'pacha.mjs' },
  { entry: 'packages/master/src/main.ts', out: 'pacha-master.mjs' },
];

for (const p of programs) {
  const outfile = path.join(dist, p.out);
  await build({
    entryPoints: [path.join(repo, p.entry)],
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
  });
  fs.chmodSync(outfile, 0o755);
  process.stdout.write(`built ${outfile} (${Math.round(fs.statSync(outfile).size / 1024)} KiB)\n`);
}

// koffi's native module (extended attributes, packages/shared/src/xattr/native.ts) cannot be inside
// the bundle: it is loaded from beside it.
const koffi = npmBinaries().find((f) => fs.existsSync(f));
if (koffi) fs.copyFileSync(koffi, path.join(dist, 'koffi.node'));
else process.stdout.write('warning: koffi.node not found: the bundle will record no extended attributes\n');

for (const unit of ['packages/agent/pacha.service', 'packages/master/pacha-master.service']) {
  const src = path.join(repo, unit);
  if (fs.existsSync(src)) fs.copyFileSync(src, path.join(dist, path.basename(unit)));
}
