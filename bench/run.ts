// `npm run bench -- NAME [NAME...]`: runs bench/NAME.ts (its exported run()). Benchmarks are kept
// out of the unit tests: they generate large trees under /tmp and take minutes.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const available = fs
  .readdirSync(here)
  .filter((f) => f.endsWith('.ts') && f !== 'run.ts')
  .map((f) => f.slice(0, -3))
  .sort();
// Arguments that are not benchmark names are passed on to each benchmark (e.g. a case letter).
const names = process.argv.slice(2).filter((a) => available.includes(a) || /^[a-z][a-z-]{2,}$/.test(a));
if (names.length === 0) {
  process.stderr.write(`usage: npm run bench -- NAME...   (available: ${available.join(', ')})\n`);
  process.exit(2);
}
for (const name of names) {
  if (!available.includes(name)) {
    process.stderr.write(`unknown benchmark "${name}" (available: ${available.join(', ')})\n`);
    process.exit(2);
  }
}
for (const name of names) {
  const mod = (await import(path.join(here, `${name}.ts`))) as { run?: (args: string[]) => Promise<unknown> };
  if (typeof mod.run !== 'function') throw new Error(`bench/${name}.ts exports no run()`);
  await mod.run(process.argv.slice(2));
}
