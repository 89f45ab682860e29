import type { CommandModule } from 'yargs';
import { PachaError, errorMessage } from '@pacha/shared/errors';
import { readReport, type ReportFile } from '../status/status-files.ts';
import { createContext, type GlobalArgs } from '../context.ts';
import { formatReport } from '../status/report-view.ts';

export const reportCommand: CommandModule<GlobalArgs, GlobalArgs> = {
  command: 'report',
  describe: 'timings of the phases of the last snapshot, push and rebuild, with bytes and files',
  handler: (args) => {
    const ctx = createContext(args, { ensureState: false });
    let report: ReportFile;
    try {
      report = readReport(ctx.state);
    } catch (e) {
      throw new PachaError(`cannot read ${ctx.state.report}: ${errorMessage(e)}`);
    }
    ctx.print(formatReport(report), report);
  },
};
