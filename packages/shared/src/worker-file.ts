// Where a worker thread's module is. In a checkout it is the .ts module beside the one that starts
// it; a bundled program (scripts/build.ts, WORKERS) has each worker bundled beside itself, as
// <name>.mjs next to the ES module bundles and <name>.bundle.cjs next to the CommonJS ones of the .deb.

/** The worker module `name` (without extension) for the module at `callerUrl` (its import.meta.url). */
export function workerFile(callerUrl: string, name: string): URL {
  if (callerUrl.endsWith('.ts')) return new URL(`./${name}.ts`, callerUrl);
  return new URL(callerUrl.endsWith('.cjs') ? `./${name}.bundle.cjs` : `./${name}.mjs`, callerUrl);
}
