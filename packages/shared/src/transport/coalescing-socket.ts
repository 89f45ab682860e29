import net from 'node:net';

// The TCP socket under the SSH connection. ssh2 writes every SSH packet to its socket in three or
// four pieces (length, encrypted payload, MAC), each its own write system call and, with
// TCP_NODELAY (which request/response SFTP needs), its own TCP segment: some 28,000 of each for an
// upload of 260 MB, on the agent and again on the master's side. This socket gathers what is
// written in one turn of the event loop and sends it with one writev when the turn ends, so an
// SFTP write request of 255 KiB goes out as one system call; a lone small request still leaves at
// once (at the end of the turn that wrote it).

export class CoalescingSocket extends net.Socket {
  private gathering = false;

  /** Start connecting to host:port. */
  open(host: string, port: number): this {
    this.connect({ host, port });
    // connect() gives the socket a write of its own (Node's, to undo a write refused after an
    // earlier end), which would hide this class's; ours goes on to Node's.
    if (Object.hasOwn(this, 'write')) Reflect.deleteProperty(this, 'write');
    return this;
  }

  override write(data: Uint8Array | string, cb?: (err?: Error | null) => void): boolean;
  override write(data: Uint8Array | string, encoding?: BufferEncoding, cb?: (err?: Error | null) => void): boolean;
  override write(data: Uint8Array | string, a?: BufferEncoding | ((err?: Error | null) => void), b?: (err?: Error | null) => void): boolean {
    if (!this.gathering) {
      this.gathering = true;
      this.cork();
      process.nextTick(() => {
        this.gathering = false;
        this.uncork();
      });
    }
    return typeof a === 'function' ? super.write(data, a) : super.write(data, a, b);
  }
}
