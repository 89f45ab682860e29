import path from 'node:path';
import picomatch from 'picomatch';

// pacha.ignore for the watcher, with the snapshot engine's rule: a pattern without '/' matches
// the base name (e.g. *.swp), a pattern with '/' matches the whole host path. Ignored paths are
// never even marked dirty, so an editor's swap file does not trigger a snapshot.
export function ignoreMatcher(patterns: string[]): (hostPath: string) => boolean {
  const byName = patterns.filter((p) => !p.includes('/'));
  // As the snapshot engine reads them: "etc/x/*" means "/etc/x/*".
  const byPath = patterns.filter((p) => p.includes('/')).map((p) => (p.startsWith('/') || p.startsWith('*') ? p : '/' + p));
  const nameMatch = byName.length > 0 ? picomatch(byName, { dot: true }) : () => false;
  const pathMatch = byPath.length > 0 ? picomatch(byPath, { dot: true }) : () => false;
  return (hostPath) => nameMatch(path.posix.basename(hostPath)) || pathMatch(hostPath);
}
