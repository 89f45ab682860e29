import type { CommandModule } from 'yargs';
import type { PathChange } from '@pacha/shared/snapshot/changes';
import { formatMode } from '@pacha/shared/format/entry';
import { escapeTerminal } from '@pacha/shared/terminal';
import { xattrFieldChanges } from '@pacha/shared/xattr/encode';
import { createContext, type GlobalArgs } from '../context.ts';

// Read-only: the exit code is 0 whether or not there are differences (like `git status`, not
// `git diff --exit-code`); scripts read --json.

function describe(c: PathChange): string {
  const p = '/' + escapeTerminal(c.path);
  if (c.kind === 'added') return `added    ${p}`;
  if (c.kind === 'deleted') return `deleted  ${p}`;
  const a = c.before!;
  const b = c.after!;
  const parts = c.details.map((d) => {
    switch (d) {
      case 'mode':
        return `mode ${formatMode(a.mode)} -> ${formatMode(b.mode)}`;
      case 'owner':
        return `owner ${escapeTerminal(a.user || '?')}:${a.uid} -> ${escapeTerminal(b.user || '?')}:${b.uid}`;
      case 'group':
        return `group ${escapeTerminal(a.group || '?')}:${a.gid} -> ${escapeTerminal(b.group || '?')}:${b.gid}`;
      case 'target':
        return `target ${escapeTerminal(a.target ?? '')} -> ${escapeTerminal(b.target ?? '')}`;
      case 'type':
        return `type ${a.type} -> ${b.type}`;
      case 'xattrs':
        return `xattrs ${escapeTerminal(xattrFieldChanges(a.xattrs, b.xattrs))}`;
      default:
        return d;
    }
  });
  return `changed  ${p} (${parts.join(', ')})`;
}

export const diffCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'diff',
  describe: 'show how the live files differ from the last snapshot (changes nothing; exit 0)',
  handler: async (args) => {
    const ctx = createContext(args, { ensureState: false });
    const { diffLive } = await import('@pacha/shared/snapshot/engine');
    const d = await diffLive(ctx);
    // The package database and the accounts against the snapshot's .pacha/packages and .pacha/accounts.
    const { liveHostChanges, hostChangeLines } = await import('@pacha/shared/host/history');
    const { Repository } = await import('@pacha/shared/git/repository');
    const objects = d.base ? new Repository(ctx.state.repo) : null;
    let host;
    try {
      const after = d.changes.filter((c) => c.after).map((c) => c.after!);
      host = liveHostChanges(objects, d.base, ctx.config, { uids: after.map((e) => e.uid), gids: after.map((e) => e.gid) });
    } finally {
      objects?.close();
    }
    const lines = [...d.changes.map(describe), ...hostChangeLines(host, '')];
    const text = lines.length === 0 ? 'no differences' : lines.join('\n');
    ctx.print(text, {
      base: d.base,
      changes: d.changes.map((c) => ({ path: '/' + c.path, kind: c.kind, details: c.details })),
      packages: host.packages,
      accounts: host.accounts,
      warnings: d.warnings,
    });
  },
};
