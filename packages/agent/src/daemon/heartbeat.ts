// How often the running daemon rewrites its heartbeat in status.json; `pacha status` calls a
// daemon late after three intervals without one.
export const HEARTBEAT_MS = 5_000;
