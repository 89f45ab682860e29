// The daemon's signals: SIGTERM and SIGINT stop it, SIGHUP reloads the configuration.
// Returns the function that removes the handlers again.
export function handleSignals(on: { stop: (signal: NodeJS.Signals) => void; reload: () => void }): () => void {
  const handlers: [NodeJS.Signals, () => void][] = [
    ['SIGTERM', () => on.stop('SIGTERM')],
    ['SIGINT', () => on.stop('SIGINT')],
    ['SIGHUP', () => on.reload()],
  ];
  for (const [sig, fn] of handlers) process.on(sig, fn);
  return () => {
    for (const [sig, fn] of handlers) process.off(sig, fn);
  };
}
