// TCP fallback for limited-VRs on networks that block UDP: the FullVR's datagrams to its
// queue-VR are carried as length-prefixed frames over one TCP connection. Both ends hand
// the frames to their own packet engine through a loopback UDP socket, so every datagram
// is still authenticated end to end by the engines and nothing in the data path changes;
// only this slower relay is per-packet JavaScript, which is acceptable for a fallback.
//
//   limited-VR engine <-udp-> [local relay] <==tcp==> [accept side] <-udp-> queue-VR engine
import dgram from 'node:dgram';
import net from 'node:net';
import { log } from '../shared/log.js';

const MAX_FRAME = 65_535;

/** Splits a TCP byte stream into 2-byte-length-prefixed frames. */
class FrameReader {
  private buf: Buffer = Buffer.alloc(0);
  constructor(private onFrame: (f: Buffer) => void) {}
  push(chunk: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    while (this.buf.length >= 2) {
      const n = this.buf.readUInt16BE(0);
      if (this.buf.length < 2 + n) break;
      this.onFrame(this.buf.subarray(2, 2 + n));
      this.buf = this.buf.subarray(2 + n);
    }
  }
}

function frame(d: Buffer): Buffer {
  const f = Buffer.allocUnsafe(2 + d.length);
  f.writeUInt16BE(d.length, 0);
  d.copy(f, 2);
  return f;
}

/** Wire one TCP connection to a loopback UDP socket that talks to the local engine. */
function bridge(sock: net.Socket, udp: dgram.Socket, engineHost: string, enginePort: number, onClose: () => void): void {
  sock.setNoDelay(true);
  const reader = new FrameReader((f) => udp.send(f, enginePort, engineHost));
  sock.on('data', (c) => reader.push(c));
  udp.on('message', (m) => {
    if (m.length <= MAX_FRAME && !sock.destroyed) sock.write(frame(m));
  });
  const close = () => {
    sock.destroy();
    try {
      udp.close();
    } catch {
      /* closed */
    }
    onClose();
  };
  sock.on('close', close);
  sock.on('error', () => sock.destroy());
}

function engineTarget(listen: { host: string; port: number }): { host: string; port: number } {
  // An engine bound to the wildcard is reachable on loopback.
  return { host: listen.host === '0.0.0.0' || listen.host === '::' ? '127.0.0.1' : listen.host, port: listen.port };
}

/**
 * Queue-VR side: accept TCP connections on the FullVR's port; each one gets a loopback UDP
 * socket, so the engine sees the limited-VR at 127.0.0.1:<that socket> (session roaming).
 */
export async function startTcpAcceptor(listen: { host: string; port: number }): Promise<() => void> {
  const target = engineTarget(listen);
  const conns = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    const udp = dgram.createSocket('udp4');
    conns.add(sock);
    udp.bind(0, '127.0.0.1', () => {
      log.info('tcp fallback connection', { from: `${sock.remoteAddress}:${sock.remotePort}` });
      bridge(sock, udp, target.host, target.port, () => conns.delete(sock));
    });
  });
  await new Promise<void>((res, rej) => {
    server.once('error', rej);
    server.listen(listen.port, listen.host, () => res());
  });
  return () => {
    for (const c of conns) c.destroy();
    server.close();
  };
}

/**
 * Limited-VR side: a loopback UDP socket stands in for the queue-VR; whatever the engine
 * sends to it goes over TCP, and frames from TCP come back from it. Reconnects on loss.
 * Returns the loopback endpoint to use as the queue-VR's address, and a stop function.
 */
export async function startTcpConnector(
  queueVr: { host: string; port: number },
  listen: { host: string; port: number },
): Promise<{ endpoint: { host: string; port: number }; stop: () => void }> {
  const target = engineTarget(listen);
  const udp = dgram.createSocket('udp4');
  await new Promise<void>((res) => udp.bind(0, '127.0.0.1', () => res()));
  const local = udp.address();
  let sock: net.Socket | null = null;
  let stopped = false;
  let pending: Buffer[] = [];
  let delay = 250;
  udp.on('message', (m, rinfo) => {
    // Only the engine talks to this socket.
    if (rinfo.address !== '127.0.0.1' || m.length > MAX_FRAME) return;
    if (sock && !sock.connecting && !sock.destroyed) sock.write(frame(m));
    else if (pending.length < 256) pending.push(m);
  });
  const connect = () => {
    if (stopped) return;
    const s = net.connect(queueVr.port, queueVr.host);
    sock = s;
    s.setNoDelay(true);
    const reader = new FrameReader((f) => udp.send(f, target.port, target.host));
    s.on('connect', () => {
      delay = 250;
      log.info('tcp fallback connected', { queueVr: `${queueVr.host}:${queueVr.port}` });
      for (const m of pending) s.write(frame(m));
      pending = [];
    });
    s.on('data', (c) => reader.push(c));
    s.on('error', () => s.destroy());
    s.on('close', () => {
      if (stopped) return;
      setTimeout(connect, delay).unref();
      delay = Math.min(delay * 2, 5000);
    });
  };
  connect();
  return {
    endpoint: { host: local.address, port: local.port },
    stop: () => {
      stopped = true;
      sock?.destroy();
      udp.close();
    },
  };
}
