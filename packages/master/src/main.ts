import { run } from './cli.ts';

// No top-level await: the .deb bundles this file as CommonJS (scripts/build.ts).
void run(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
