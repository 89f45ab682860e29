import { loadConfig } from '@pacha/shared/config';
import { errorMessage } from '@pacha/shared/errors';
import { acquireLock } from '@pacha/shared/lock';
import { createLogger } from '@pacha/shared/log';
import { pushSnapshots } from '@pacha/shared/push/push';
import { statePaths } from '@pacha/shared/state';
import { openTransport } from '@pacha/shared/transport/open';
import { faultyTransport, type Fault } from './faulty-transport.ts';

// The crash-consistency tests' runner: `pacha push` (same config, pid lock and push) whose
// transport kills this process with SIGKILL at one point, as a power cut or OOM kill would.
//   node test-support/crash-push.ts POINT      (PACHA_ROOT_DIR and PACHA_CONFIG as for pacha)
// POINT is a step of the push (CRASH_POINTS), call:<n> (before the n-th transport call) or
// during:<n> (while the n-th call is in flight: mid-upload, mid-rename).

export const CRASH_PUSH = import.meta.filename;

const die = () => process.kill(process.pid, 'SIGKILL');
const PACK = /\/objects\/pack\/pack-[0-9a-f]{40}\.pack$/;
const IDX = /\/objects\/pack\/pack-[0-9a-f]{40}\.idx$/;
const LOCK = /\/pacha-push\.lock$/;
const REF = /\/refs\/heads\/main$/;

/** The steps of a push (docs/push-protocol.md), each the moment before or after one transport call. */
export const CRASH_POINTS: Record<string, Omit<Fault, 'action'>> = {
  'connected': { when: 'before' },
  'locked': { op: 'createExclusive', path: LOCK, when: 'after' },
  'cleared': { op: 'stat', path: /\/repo\/HEAD$/, when: 'before' },
  'repo-ready': { op: 'readFile', path: REF, when: 'before' },
  'negotiated': { op: 'readFile', path: REF, when: 'after' },
  'packed': { op: 'upload', when: 'before' },
  'pack-uploaded': { op: 'upload', path: /\/tmp_pack_[^/]*$/, when: 'after' },
  'idx-uploaded': { op: 'upload', path: /\/tmp_idx_[^/]*$/, when: 'after' },
  'upload-checked': { op: 'stat', path: PACK, when: 'before' },
  'pack-renamed': { op: 'rename', path: PACK, when: 'after' },
  'idx-renamed': { op: 'rename', path: IDX, when: 'after' },
  'ref-checked': { op: 'writeFile', path: /\/refs\/heads\/\.main\.tmp-[^/]*$/, when: 'before' },
  'ref-written': { op: 'rename', path: REF, when: 'after' },
  'unlocked': { op: 'remove', path: LOCK, when: 'after' },
};

export function crashFault(point: string): Fault {
  const m = /^(call|during):(\d+)$/.exec(point);
  if (m) return { nth: Number(m[2]), when: m[1] === 'call' ? 'before' : 'during', action: die };
  const step = CRASH_POINTS[point];
  if (!step) throw new Error(`unknown crash point ${point}: accepted: ${Object.keys(CRASH_POINTS).join(', ')}, call:<n>, during:<n>`);
  return { ...step, action: die };
}

if (process.argv[1] === CRASH_PUSH) {
  const fault = crashFault(process.argv[2] ?? '');
  const config = loadConfig({});
  const log = createLogger({});
  const state = statePaths(config.stateDir);
  const lock = acquireLock(state.lock, 'push', log);
  const transport = await openTransport(config, log);
  try {
    const r = await pushSnapshots({ config, state, log }, { transport: faultyTransport(transport, [fault]) });
    process.stdout.write(`pushed ${r.commits} snapshot(s)\n`);
  } catch (err) {
    process.stderr.write(`pacha: ${errorMessage(err)}\n`);
    process.exitCode = 1;
  } finally {
    await transport.close();
    lock.release();
  }
}
