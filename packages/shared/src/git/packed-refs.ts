// The packed-refs file: "<id> <ref>" lines, "# pack-refs with: ..." header, "^<id>" peeled tags.

/** Every ref the text names, ref -> id. Lines that are not "<40 hex> <name>" are skipped. */
export function parsePackedRefs(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^([0-9a-f]{40}) (\S.*)$/.exec(line);
    if (m && !out.has(m[2])) out.set(m[2], m[1]);
  }
  return out;
}
