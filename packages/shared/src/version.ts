// Bumped on release. The snapshot format number is written into every snapshot (.pacha/format)
// so that any later pacha can tell what it reads: agents and master need not run the same version.
export const PACHA_VERSION = '0.1.0';
export const SNAPSHOT_FORMAT = 1;
