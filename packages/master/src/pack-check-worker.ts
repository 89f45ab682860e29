import { parentPort } from 'node:worker_threads';
import { errorMessage } from '@pacha/shared/errors';
import type { ObjectType } from '@pacha/shared/git/objects';
import { PackIndex } from '@pacha/shared/git/pack-index';
import { PackReader } from '@pacha/shared/git/pack-reader';
import { objectRule, type RangeReply, type RangeTask } from './pack-check.ts';

// A thread of pack-check.ts: checks one range of a pack's entries with PackReader.verifyEntries.
// The reader of the last pack is kept: the ranges of one pack come one after another.

let last: { key: string; reader: PackReader } | undefined;

parentPort!.on('message', async (task: RangeTask) => {
  let reply: RangeReply;
  try {
    const key = `${task.packFile}\0${task.idxFile}`;
    if (last?.key !== key) {
      last?.reader.close();
      last = { key, reader: new PackReader(task.packFile, new PackIndex(task.idxName, PackIndex.load(task.idxFile).bytes)) };
    }
    const oids: string[] = [];
    const types: ObjectType[] = [];
    const problems = await last.reader.verifyEntries(
      {
        check: objectRule,
        onObject: (oid, type) => {
          oids.push(oid);
          types.push(type);
        },
      },
      task.from,
      task.to,
    );
    reply = { id: task.id, problems, oids, types };
  } catch (e) {
    reply = { id: task.id, error: errorMessage(e) };
  }
  parentPort!.postMessage(reply);
});
