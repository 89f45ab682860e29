// string-width as yargs, cliui and wrap-ansi call it, to lay out help text (which yargs renders
// on every command it runs). Importing string-width builds an Intl.Segmenter and compiles large
// Unicode regular expressions, in three copies among their dependencies: some 30 ms of every
// command's start-up. The launchers (on-use.js) and the bundles (scripts/build.ts) hand them
// this file instead. Printable ASCII is one column per character, as string-width counts it; any
// other text goes to the real one, loaded on first use (CommonJS, so that both can load it
// synchronously).
'use strict';

const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
let real;

module.exports = function stringWidth(text, options) {
  if (typeof text === 'string' && PRINTABLE_ASCII.test(text)) return text.length;
  real ??= require('string-width').default;
  return real(text, options);
};
