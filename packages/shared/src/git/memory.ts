import v8 from 'node:v8';
import vm from 'node:vm';

// Streaming a large file through zlib allocates a fresh output buffer every few hundred KiB.
// V8 frees such buffers only when a collection runs, and it starts one only after ~64 MiB of
// them have piled up: enough to double the agent's resident memory. A young-generation
// collection every few MiB streamed keeps memory flat; it costs about a millisecond.
let gc: ((opts?: object) => void) | null | undefined;

export function collectYoungGarbage(): void {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      gc = vm.runInNewContext('gc') as (opts?: object) => void;
    } catch {
      gc = null;
    }
  }
  gc?.({ type: 'minor' });
}
