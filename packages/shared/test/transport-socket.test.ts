import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { CoalescingSocket } from '../src/transport/coalescing-socket.ts';

// The SSH connection's socket sends what one turn of the event loop wrote with one writev
// (ssh2 writes each packet in three or four pieces), in order, and holds nothing past the turn.

const closers: (() => void)[] = [];
afterEach(() => {
  for (const c of closers.splice(0)) c();
});

/** A loopback server that collects what it receives; resolves with the connected socket. */
async function connected(): Promise<{ sock: CoalescingSocket; received: () => Buffer; got: (n: number) => Promise<void> }> {
  const chunks: Buffer[] = [];
  let waiting: { n: number; resolve: () => void } | undefined;
  const total = () => chunks.reduce((a, c) => a + c.length, 0);
  const srv = net.createServer((c) => c.on('data', (d: Buffer) => {
    chunks.push(d);
    if (waiting && total() >= waiting.n) waiting.resolve();
  }));
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const sock = new CoalescingSocket().open('127.0.0.1', (srv.address() as net.AddressInfo).port);
  sock.setNoDelay(true);
  closers.push(() => sock.destroy(), () => srv.close());
  await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
  return {
    sock,
    received: () => Buffer.concat(chunks),
    got: (n) => (total() >= n ? Promise.resolve() : new Promise<void>((resolve) => (waiting = { n, resolve }))),
  };
}

describe('the SSH connection socket', () => {
  it('sends the writes of one turn with one writev, in order', async () => {
    const { sock, received, got } = await connected();
    const calls: number[] = [];
    const writev = sock._writev!.bind(sock);
    sock._writev = (chunks, cb) => {
      calls.push(chunks.length);
      writev(chunks, cb);
    };
    const pieces = [Buffer.from([0, 0, 0, 9]), Buffer.alloc(30_000, 1), Buffer.alloc(16, 2), Buffer.from([0, 0, 0, 5]), Buffer.alloc(100, 3)];
    for (const p of pieces) sock.write(p);
    await got(30_124);
    expect(calls).toEqual([pieces.length]);
    expect(received().equals(Buffer.concat(pieces))).toBe(true);
  });

  it('sends a lone write at the end of its turn', async () => {
    const { sock, received, got } = await connected();
    sock.write(Buffer.from('ping'));
    await got(4);
    expect(received().toString()).toBe('ping');
    sock.write('pong', 'latin1');
    await got(8);
    expect(received().toString()).toBe('pingpong');
  });
});
