import type { Argv, CommandModule } from 'yargs';
import { DEFAULT_HOSTS_PATH, masterLayout } from '../layout.ts';
import { listHosts } from '../inspect.ts';

interface Args {
  'hosts-path'?: string;
  json?: boolean;
}

export const hostsPathOption = <T>(y: Argv<T>) =>
  y.option('hosts-path', { type: 'string', describe: `folder holding one folder per host (default ${DEFAULT_HOSTS_PATH} under PACHA_ROOT_DIR)` });

function human(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export const hostsCommand: CommandModule<Args, Args> = {
  command: 'hosts',
  describe: 'list hosts with last snapshot time, commits and size',
  builder: (y) => hostsPathOption(y) as Argv<Args>,
  handler: (args) => {
    const { hostsPath } = masterLayout({ hostsPath: args['hosts-path'] });
    const hosts = listHosts(hostsPath);
    if (args.json) {
      process.stdout.write(JSON.stringify({ hostsPath, hosts }, null, 2) + '\n');
      return;
    }
    if (hosts.length === 0) {
      process.stdout.write(`no hosts under ${hostsPath}\n`);
      return;
    }
    const rows = [['HOST', 'LAST SNAPSHOT', 'COMMITS', 'SIZE', 'HEAD']];
    for (const h of hosts) {
      rows.push([h.name, h.lastSnapshot ?? (h.error ? 'error: ' + h.error : 'never'), String(h.commits), human(h.size), h.head ? h.head.slice(0, 12) : '-']);
    }
    const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
    process.stdout.write(rows.map((r) => r.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd()).join('\n') + '\n');
  },
};
