// @pacha/shared: the library behind `pacha` and `pacha-master` (docs/architecture.md has the
// module table). This index names its entry points; the programs import the module they need by
// its own path (`@pacha/shared/push/push`), so a command loads only what it uses.

export * as config from './config.ts';              // /etc/pacha.conf: parse, check, defaults
export * as paths from './paths.ts';                // host paths under PACHA_ROOT_DIR
export * as state from './state.ts';                // the agent's state dir layout, atomic writes
export * as errors from './errors.ts';              // PachaError and its kinds, each with a stable code
export * as log from './log.ts';                    // the logger (secrets redacted)
export * as lock from './lock.ts';                  // the pid lock shared by every long operation
export * as watchlist from './watchlist.ts';        // the watch list
export * as snapshot from './snapshot/engine.ts';   // the archiver: take a snapshot
export * as transport from './transport/open.ts';   // reach the master (local folder or SFTP)
export * as push from './push/push.ts';             // send the snapshots the master lacks
export * as rebuild from './rebuild/rebuild.ts';    // the restorer: rebuild a host from its snapshots
