import type { CommandModule } from 'yargs';
import { acquireLock } from '@pacha/shared/lock';
import { errorMessage } from '@pacha/shared/errors';
import { createContext, type GlobalArgs } from '../context.ts';
import { pendingSinceLastPush, recordPush, recordPushFailure } from '../status/status-files.ts';

export const pushCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'push',
  describe: 'send the snapshots the master lacks',
  handler: async (args) => {
    // Loaded on use: keeps start-up of the other commands short.
    const { pushSnapshots } = await import('@pacha/shared/push/push');
    const ctx = createContext(args);
    const lock = acquireLock(ctx.state.lock, 'push', ctx.log);
    try {
      const r = await pushSnapshots(ctx);
      recordPush(ctx.state, r);
      const text = r.commits === 0
        ? r.remoteHead === null ? 'nothing to push: no snapshots yet' : `master is up to date (${r.remoteHead.slice(0, 12)})`
        : `pushed ${r.commits} snapshot(s): ${r.objects} objects, ${r.bytes} bytes; master at ${r.remoteHead!.slice(0, 12)}`;
      ctx.print(text, { upToDate: r.commits === 0, ...r });
    } catch (err) {
      try {
        recordPushFailure(ctx.state, errorMessage(err), await pendingSinceLastPush(ctx.state));
      } catch (e) {
        ctx.log.debug(`could not record the push failure in ${ctx.state.status}: ${errorMessage(e)}`);
      }
      // The design's promise: pacha.callback.url hears of every failed push (the snapshots stay local).
      const { postCallback } = await import('@pacha/shared/callback');
      await postCallback(ctx.config.callbackUrl, { host: ctx.config.hostname, event: 'push-failed', error: errorMessage(err), time: new Date().toISOString() }, ctx.log, { what: 'push' });
      throw err;
    } finally {
      lock.release();
    }
  },
};
