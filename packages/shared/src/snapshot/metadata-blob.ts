import type { Node } from './stat-cache.ts';

// The .pacha/metadata blob of a snapshot. A re-snapshot usually changes a few lines of
// 100,000: when the paths are the same as last time, the previous blob is copied with only the
// changed lines encoded again, instead of joining every line into a new string.

/** Above this many changed lines, building the blob from scratch is as cheap. */
const SPLICE_LIMIT = 4096;

export function metadataBlob(order: Node[], prev: { nodes: Node[]; metadata?: Buffer; lineAt?: Uint32Array } | null): Buffer {
  const old = prev?.metadata;
  if (old !== undefined && prev !== null && prev.nodes.length === order.length && order.length > 0) {
    const changed: number[] = [];
    for (let i = 0; i < order.length && changed.length <= SPLICE_LIMIT; i++) {
      const n = order[i];
      const p = prev.nodes[i];
      if (n === p) continue;
      if (n.path !== p.path) {
        changed.length = SPLICE_LIMIT + 1; // another set of paths: build it whole
        break;
      }
      if (n.line !== p.line) changed.push(i);
    }
    if (changed.length === 0) return old;
    if (changed.length <= SPLICE_LIMIT) return spliceLines(old, changed.map((i) => ({ index: i, line: order[i].line })), prev.lineAt);
  }
  return Buffer.from(order.length === 0 ? '' : order.map((n) => n.line).join('\n') + '\n');
}

/**
 * `old` with line `index` replaced by `line` for each change (ascending indexes). lineAt, when
 * known, says where each line starts; else the lines are counted.
 */
export function spliceLines(old: Buffer, changes: { index: number; line: string }[], lineAt?: Uint32Array): Buffer {
  const parts: Buffer[] = [];
  let line = 0;
  let at = 0; // start of `line` in old
  let copied = 0; // old is copied up to here
  for (const { index: i, line: text } of changes) {
    if (lineAt !== undefined) at = lineAt[i];
    else {
      while (line < i) {
        at = old.indexOf(10, at) + 1;
        line++;
      }
    }
    const end = lineAt !== undefined ? (i + 1 < lineAt.length ? lineAt[i + 1] : old.length) : old.indexOf(10, at) + 1;
    if (end === 0) throw new Error('internal: .pacha/metadata has fewer lines than its paths');
    parts.push(old.subarray(copied, at), Buffer.from(text + '\n'));
    copied = end;
    at = end;
    line = i + 1;
  }
  parts.push(old.subarray(copied));
  return Buffer.concat(parts);
}
