// Plain JavaScript, run by the bins before the program: dependencies of dependencies that cost
// start-up time for what most commands never use are resolved to stand-ins that load them on
// first use (the bundles do the same at build time: scripts/build.ts).
import module from 'node:module';

/** Bare specifier -> the stand-in that loads it on first use. */
export const ON_USE = {
  'string-width': new URL('./string-width-on-use.cjs', import.meta.url).href,
};

export function loadOnUse() {
  const standIns = new Set(Object.values(ON_USE));
  // (A Node without the hooks API loads them all at start-up, as before.)
  module.registerHooks?.({
    resolve(specifier, context, next) {
      const url = Object.hasOwn(ON_USE, specifier) ? ON_USE[specifier] : undefined;
      // The stand-in itself loads the real module.
      if (url !== undefined && !standIns.has(context.parentURL)) return { url, format: 'commonjs', shortCircuit: true };
      return next(specifier, context);
    },
  });
}
