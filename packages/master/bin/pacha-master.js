#!/usr/bin/env node
// Thin launcher: Node 24 runs the TypeScript sources directly (type stripping). The compile
// cache keeps start-up short for the many short commands an operator or a script runs, and
// on-use.js spares them what their dependencies load for help text only.
// An older Node (a system's default) re-runs this file under the project's own Node 24, or gets
// one line saying what is needed (node-guard.js), never a stack trace.
import module from 'node:module';
import { nodeIsNewEnough } from '../../shared/bin/node-guard.js';

if (nodeIsNewEnough(import.meta.url)) {
  module.enableCompileCache?.();
  (await import('../../shared/bin/on-use.js')).loadOnUse();
  await import('../src/main.ts');
}
