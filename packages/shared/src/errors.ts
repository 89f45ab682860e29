// Errors an operator can act on: one class per kind, each with a stable `code` that callers and
// scripts test (never the message text), the CLI's exit code (1 failure, 2 usage/bad input) and
// an optional hint. Transport errors carry the errno name of their POSIX kind as their code, so a
// caller tells "no such file" from "permission denied" the same way on a local folder and over SFTP.

export interface PachaErrorOptions {
  hint?: string;
  cause?: unknown;
  exitCode?: number;
}

export class PachaError extends Error {
  /** Stable identifier of the kind; subclasses set their own. */
  readonly code: string = 'EPACHA';
  readonly exitCode: number;
  readonly hint?: string;
  constructor(message: string, opts: PachaErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.exitCode = opts.exitCode ?? 1;
    this.hint = opts.hint;
  }
}

/** Bad input from the operator (arguments, config): exit code 2. */
export class UsageError extends PachaError {
  override readonly code = 'EUSAGE';
  constructor(message: string, hint?: string) {
    super(message, { exitCode: 2, hint });
  }
}

// ---- what a transport (local folder or SFTP) reports; decided at the transport boundary ----

/** The master cannot be reached, stopped answering, or the connection was lost: worth retrying. */
export class ConnectionError extends PachaError {
  override readonly code = 'ECONNECTION';
}

/** No such file or directory on the master. */
export class NotFoundError extends PachaError {
  override readonly code = 'ENOENT';
}

/** The master refused access to a path. */
export class PermissionError extends PachaError {
  override readonly code = 'EACCES';
}

/** The path exists and is in the way (a file where a directory should be). */
export class ExistsError extends PachaError {
  override readonly code = 'EEXIST';
}

/** The master does not offer an operation (an SFTP extension, for one). */
export class UnsupportedError extends PachaError {
  override readonly code = 'ENOTSUP';
}

/** Any other failure the master reported for an operation: not retried. */
export class RemoteError extends PachaError {
  override readonly code = 'EREMOTE';
}

/** The master's host key is not the recorded one (or none is recorded): never retried. */
export class HostKeyError extends PachaError {
  override readonly code = 'EHOSTKEY';
  readonly fingerprint: string;
  readonly keyType: string;
  constructor(message: string, fingerprint: string, keyType: string, hint: string) {
    super(message, { hint });
    this.fingerprint = fingerprint;
    this.keyType = keyType;
  }
}

/** The master refused this host's credentials. */
export class AuthError extends PachaError {
  override readonly code = 'EAUTH';
}

/** Another writer holds a lock (the master's push lock). */
export class LockedError extends PachaError {
  override readonly code = 'ELOCKED';
}

/** Only a ConnectionError is worth another attempt: everything else repeats the same answer. */
export function isTransient(err: unknown): boolean {
  return err instanceof ConnectionError;
}

/** The errno name of a Node system error ('ENOENT', 'EACCES', ...), or undefined. */
export function errnoOf(err: unknown): string | undefined {
  return err instanceof Error && 'code' in err && typeof err.code === 'string' ? err.code : undefined;
}

export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}

// ---- what the git object reader (git/repository.ts) reports ----

/** No copy of the object exists in the repository (no pack lists it, no loose file). */
export class ObjectMissingError extends PachaError {
  override readonly code = 'EOBJECTMISSING';
  readonly oid: string;
  constructor(oid: string, where: string) {
    super(`object ${oid} is missing from ${where}`);
    this.oid = oid;
  }
}

/** Every stored copy of the object is damaged: it does not inflate, or does not hash to its id. */
export class ObjectCorruptError extends PachaError {
  override readonly code = 'EOBJECTCORRUPT';
  readonly oid: string;
  /** True when a copy inflated fine but hashes to another id. */
  readonly idMismatch: boolean;
  constructor(oid: string, message: string, idMismatch: boolean) {
    super(message);
    this.oid = oid;
    this.idMismatch = idMismatch;
  }
}

/** A pack or its .idx is not what the format says (bad header, offsets, checksum, CRC, order). */
export class PackCorruptError extends PachaError {
  override readonly code = 'EPACKCORRUPT';
  readonly file: string;
  constructor(file: string, message: string) {
    super(`${file}: ${message}`);
    this.file = file;
  }
}

/** The object exists but is of another type than the one that refers to it says. */
export class ObjectTypeError extends PachaError {
  override readonly code = 'EOBJECTTYPE';
  readonly oid: string;
  constructor(oid: string, actual: string, expected: string) {
    super(`object ${oid} is a ${actual}, not a ${expected}`);
    this.oid = oid;
  }
}
