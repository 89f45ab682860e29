import picomatch from 'picomatch';

// pacha.ignore, for the snapshot's scan and the daemon's watcher alike: a pattern without '/'
// matches a base name anywhere (*.swp); a pattern with '/' matches the whole host path (a
// leading '/' is implied: "var/cache/*" means "/var/cache/*"). The patterns are compiled into
// two regular expressions, tested once per path.
export function ignoreMatcher(patterns: string[]): (hostPath: string) => boolean {
  const names: string[] = [];
  const paths: string[] = [];
  for (const p of patterns) {
    if (p.includes('/')) paths.push(picomatch.makeRe(p.startsWith('/') || p.startsWith('*') ? p : '/' + p, { dot: true }).source);
    else names.push(picomatch.makeRe(p, { dot: true }).source);
  }
  const nameRe = names.length > 0 ? new RegExp(names.map((s) => `(?:${s})`).join('|')) : null;
  const pathRe = paths.length > 0 ? new RegExp(paths.map((s) => `(?:${s})`).join('|')) : null;
  if (nameRe === null && pathRe === null) return () => false;
  return (hostPath) => (nameRe !== null && nameRe.test(hostPath.slice(hostPath.lastIndexOf('/') + 1))) || (pathRe !== null && pathRe.test(hostPath));
}
