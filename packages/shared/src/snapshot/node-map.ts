import type { Node } from './stat-cache.ts';

// The new snapshot's nodes by path. A re-scan usually changes a handful of 100,000 paths, and
// copying the previous snapshot's Map costs some 30 ms: NodeOverlay records only the changes
// over the previous Map, which it leaves alone until mergeIntoBase() (when the snapshot is done). A plain Map is a NodeMap too.

/** The node now at the path of `was` (a node of the previous snapshot); undefined when gone. */
export function nodeNow(nodes: NodeMap, was: Node): Node | undefined {
  return nodes instanceof NodeOverlay ? nodes.now(was) : nodes.get(was.path);
}

export interface NodeMap {
  get(path: string): Node | undefined;
  has(path: string): boolean;
  set(path: string, node: Node): unknown;
  delete(path: string): boolean;
  readonly size: number;
  keys(): Iterable<string>;
  [Symbol.iterator](): Iterator<[string, Node]>;
}

/**
 * The nodes as a plain Map, for the next snapshot to start from. An overlay writes its changes
 * into its base Map (no copy): call it only when the base is no longer needed as it was.
 */
export function nodesAsMap(nodes: NodeMap): Map<string, Node> {
  return nodes instanceof NodeOverlay ? nodes.mergeIntoBase() : (nodes as Map<string, Node>);
}

export class NodeOverlay implements NodeMap {
  private readonly base: Map<string, Node>;
  /** Paths set or deleted (null) since the base. */
  private readonly changes = new Map<string, Node | null>();
  private count: number;

  constructor(base: Map<string, Node>) {
    this.base = base;
    this.count = base.size;
  }

  get(path: string): Node | undefined {
    const c = this.changes.get(path);
    if (c === undefined) return this.base.get(path);
    return c ?? undefined;
  }

  has(path: string): boolean {
    return this.get(path) !== undefined;
  }

  set(path: string, node: Node): this {
    if (!this.has(path)) this.count++;
    this.changes.set(path, node);
    return this;
  }

  delete(path: string): boolean {
    if (!this.has(path)) return false;
    this.count--;
    this.changes.set(path, null);
    return true;
  }

  get size(): number {
    return this.count;
  }

  /** The node now at the path of `was`, a node of the base (undefined: deleted); one small lookup. */
  now(was: Node): Node | undefined {
    const c = this.changes.get(was.path);
    if (c === undefined) return was;
    return c ?? undefined;
  }

  /** Apply the changes to the base Map and return it; the overlay is spent. */
  mergeIntoBase(): Map<string, Node> {
    for (const [path, c] of this.changes) {
      if (c === null) this.base.delete(path);
      else this.base.set(path, c);
    }
    this.changes.clear();
    return this.base;
  }

  *keys(): IterableIterator<string> {
    for (const [path] of this) yield path;
  }

  *[Symbol.iterator](): IterableIterator<[string, Node]> {
    for (const [path, node] of this.base) {
      const c = this.changes.get(path);
      if (c === undefined) yield [path, node];
      else if (c !== null) yield [path, c];
    }
    for (const [path, c] of this.changes) if (c !== null && !this.base.has(path)) yield [path, c];
  }
}
