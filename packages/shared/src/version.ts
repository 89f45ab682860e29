// Bumped on release. The snapshot format a release writes is format/snapshot.ts FORMAT_VERSION,
// recorded in every snapshot (.pacha/format) so that any later pacha can tell what it reads:
// agents and master need not run the same version.
export const PACHA_VERSION = '0.1.0';
