import type { Argv, CommandModule } from 'yargs';
import fs from 'node:fs';
import { PachaError } from '@pacha/shared/errors';
import { escapeTerminal } from '@pacha/shared/terminal';
import { masterLayout } from '../layout.ts';
import { verifyHost } from '../inspect.ts';
import { hostsPathOption } from './hosts.ts';
import { masterHostPaths } from '@pacha/shared/master-tree';

interface Args {
  host?: string;
  'hosts-path'?: string;
  json?: boolean;
}

export const verifyCommand: CommandModule<Args, Args> = {
  command: 'verify [host]',
  describe: 'check every ref, pack and object (all hosts, or one); non-zero exit on damage',
  builder: (y) => hostsPathOption(y).positional('host', { type: 'string', describe: 'only this host' }) as Argv<Args>,
  handler: async (args) => {
    const { hostsPath } = masterLayout({ hostsPath: args['hosts-path'] });
    const hosts = args.host
      ? [args.host]
      : fs.readdirSync(hostsPath, { withFileTypes: true }).filter((d) => d.isDirectory() && fs.existsSync(masterHostPaths(hostsPath, d.name).repo)).map((d) => d.name).sort();
    const reports = [];
    for (const h of hosts) reports.push(await verifyHost(hostsPath, h));
    const damaged = reports.filter((r) => !r.ok);
    if (args.json) process.stdout.write(JSON.stringify({ hostsPath, ok: damaged.length === 0, hosts: reports }, null, 2) + '\n');
    else {
      for (const r of reports) {
        for (const n of r.notes) process.stdout.write(`${r.host}: note: ${escapeTerminal(n)}\n`);
        if (r.ok) process.stdout.write(`${r.host}: ok (${r.objects} objects reachable from ${r.head ? r.head.slice(0, 12) : 'no snapshot'}, ${r.packs} pack(s))\n`);
        else for (const p of r.problems) process.stdout.write(`${r.host}: DAMAGED: ${escapeTerminal(p)}\n`);
      }
    }
    if (damaged.length > 0) {
      throw new PachaError(`${damaged.length} of ${reports.length} host repositories are damaged: ${damaged.map((r) => r.host).join(', ')}`, {
        hint: 'the host still has its local history: after moving the damaged repository aside, its next push sends everything again',
      });
    }
  },
};
