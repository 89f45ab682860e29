import type { Transport } from '../transport/transport.ts';

// Test hook for the crash-consistency tests: PACHA_TEST_CRASH_AT makes the push process kill
// itself with SIGKILL at one point, as a power cut or OOM kill would. Inert when unset.
//   <step>        at a named step of the push (see the crashPoint calls in push.ts)
//   call:<n>      just before the n-th transport call (1-based)
//   during:<n>    while the n-th transport call is in flight (mid-upload, mid-rename)
const CRASH_AT = process.env.PACHA_TEST_CRASH_AT;

export function crashPoint(step: string): void {
  if (CRASH_AT !== undefined && CRASH_AT === step) process.kill(process.pid, 'SIGKILL');
}

export function crashTestTransport(t: Transport): Transport {
  if (CRASH_AT === undefined || !/^(call|during):\d+$/.test(CRASH_AT)) return t;
  const [kind, nth] = CRASH_AT.split(':');
  const n = Number(nth);
  let calls = 0;
  return new Proxy(t, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || prop === 'close') return v;
      return (...args: unknown[]) => {
        calls++;
        if (calls === n && kind === 'call') process.kill(process.pid, 'SIGKILL');
        const out = (v as (...a: unknown[]) => unknown).apply(target, args);
        if (calls === n && kind === 'during') setImmediate(() => process.kill(process.pid, 'SIGKILL'));
        return out;
      };
    },
  });
}
