import { bytes } from '../format.ts';
import type { ReportEntry, ReportFile } from './status-files.ts';

// `pacha report`: one table of the last snapshot, push and rebuild, phase by phase, then the
// sizes involved. Phases are whatever the writer recorded (snapshot: load, scan, hash, trees, write, commit;
// push: connect, negotiate, pack, upload, ref; rebuild: fetch, validate, hooks, restore, ...).

const SIZE_KEYS = ['files', 'bytes', 'objects', 'commits'] as const;

function fmtMs(ms: number): string {
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(2)} s`;
}

export function formatReport(report: ReportFile): string {
  const rows: string[][] = [['operation', 'phase', 'time', 'share']];
  const notes: string[] = [];
  for (const op of ['snapshot', 'push', 'rebuild'] as const) {
    const e: ReportEntry | undefined = report[op];
    if (!e) {
      rows.push([op, '(none yet)', '', '']);
      continue;
    }
    const phases = Object.entries(e.phases ?? {}).filter(([, v]) => typeof v === 'number');
    const total = phases.reduce((a, [, v]) => a + v, 0);
    let first = true;
    for (const [name, ms] of phases) {
      rows.push([first ? op : '', name, fmtMs(ms), total > 0 ? `${Math.round((ms / total) * 100)}%` : '']);
      first = false;
    }
    rows.push([first ? op : '', 'total', fmtMs(total), '']);
    const sizes = SIZE_KEYS.filter((k) => typeof e[k] === 'number').map((k) => (k === 'bytes' ? bytes(e[k] as number) : `${e[k]} ${k}`));
    const when = typeof e.time === 'string' ? ` at ${e.time}` : '';
    // A snapshot says how it looked at the files: full (every root walked) or dirty (the watcher's paths).
    if (typeof e.route === 'string') sizes.push(`${e.route} route`);
    notes.push(`${op}${when}: ${sizes.length > 0 ? sizes.join(', ') : 'no sizes recorded'}`);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const line = (r: string[]) => r.map((c, i) => (i >= 2 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  const out = [line(rows[0]), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line), '', ...notes];
  return out.join('\n');
}
