import { run } from './cli.ts';

// The original Pacha spelled the rebuild as `pacha --rebuild HOST`: accept it as `pacha rebuild HOST`.
function normaliseArgv(argv: string[]): string[] {
  const i = argv.findIndex((a) => a === '--rebuild' || a.startsWith('--rebuild='));
  if (i < 0) return argv;
  const a = argv[i];
  const rest = argv.slice(0, i).concat(argv.slice(i + 1));
  if (a.startsWith('--rebuild=')) return ['rebuild', a.slice('--rebuild='.length), ...rest];
  const host = argv[i + 1];
  const others = argv.slice(0, i).concat(argv.slice(i + 2));
  return host === undefined ? ['rebuild', ...rest] : ['rebuild', host, ...others];
}

// No top-level await: the .deb bundles this file as CommonJS (scripts/build.ts).
void run(normaliseArgv(process.argv.slice(2))).then((code) => {
  process.exitCode = code;
});
