import { lineBytes, type Node } from './stat-cache.ts';

// The .pacha/metadata blob of a snapshot. A re-snapshot usually changes a few lines of
// 100,000: the lines of nodes still as the stat cache holds them are copied from its text in
// blocks, and only the others are encoded, instead of joining every line into a new string.

export function metadataBlob(order: Node[]): Buffer {
  const parts: Buffer[] = [];
  let block: { text: Buffer; start: number; end: number } | null = null;
  let fresh: string[] = [];
  const flushBlock = () => {
    if (block === null) return;
    parts.push(block.text.subarray(block.start, block.end));
    block = null;
  };
  const flushFresh = () => {
    if (fresh.length === 0) return;
    parts.push(Buffer.from(fresh.join('\n') + '\n'));
    fresh = [];
  };
  for (const n of order) {
    const r = lineBytes(n);
    if (r === null) {
      flushBlock();
      fresh.push(n.line);
    } else if (block !== null && r.text === block.text && r.start === block.end) {
      block.end = r.end;
    } else {
      flushBlock();
      flushFresh();
      block = r;
    }
  }
  if (parts.length === 0 && fresh.length === 0 && block !== null) {
    const whole: { text: Buffer; start: number; end: number } = block;
    // Nothing changed: the cache's text itself.
    if (whole.start === 0 && whole.end === whole.text.length) return whole.text;
  }
  flushBlock();
  flushFresh();
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

/** `old` with line `index` replaced by `line` for each change (ascending indexes); lineAt says where each line starts. */
export function spliceLines(old: Buffer, changes: { index: number; line: string }[], lineAt: Uint32Array): Buffer {
  const parts: Buffer[] = [];
  let copied = 0; // old is copied up to here
  for (const { index: i, line } of changes) {
    parts.push(old.subarray(copied, lineAt[i]), Buffer.from(line + '\n'));
    copied = i + 1 < lineAt.length ? lineAt[i + 1] : old.length;
  }
  parts.push(old.subarray(copied));
  return Buffer.concat(parts);
}
