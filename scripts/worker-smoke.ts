import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { WORKERS, workerBundle, type BundleFormat } from './build.ts';

// The tests of the bundles (build.test.ts, package.test.ts) start each bundled worker thread and
// give it a job that fails at once: a worker that answers was bundled whole and found its modules.

const JOBS: Record<(typeof WORKERS)[number]['name'], (tmp: string) => unknown[]> = {
  'pack-check-worker': (tmp) => [{ id: 1, packFile: path.join(tmp, 'none.pack'), idxFile: path.join(tmp, 'none.idx'), idxName: 'none.idx', from: 0, to: 1 }],
  'pack-stream-worker': (tmp) => [{ kind: 'start', copyFile: path.join(tmp, 'copy') }, { kind: 'abort' }],
  'pack-arrival-worker': (tmp) => [{ kind: 'pack', id: 0, packFile: path.join(tmp, 'none.pack'), idxFile: path.join(tmp, 'none.idx'), size: 100 }, { kind: 'stop' }],
};

/** Each worker bundle in `dir`, with its first answer. */
export async function askBundledWorkers(dir: string, format: BundleFormat): Promise<Record<string, unknown>> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'pacha-worker-smoke-'));
  const answers: Record<string, unknown> = {};
  try {
    for (const w of WORKERS) {
      const worker = new Worker(path.join(dir, workerBundle(w.name, format)));
      answers[w.name] = await new Promise((resolve, reject) => {
        worker.once('message', resolve);
        worker.once('error', reject);
        for (const m of JOBS[w.name](tmp)) worker.postMessage(m);
      });
      await worker.terminate();
    }
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return answers;
}
