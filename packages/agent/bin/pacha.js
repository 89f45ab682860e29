#!/usr/bin/env node
// Thin launcher: Node 24 runs the TypeScript sources directly (type stripping). The compile
// cache keeps start-up short for the many short commands an operator or a script runs.
import module from 'node:module';

module.enableCompileCache?.();
await import('../src/main.ts');
