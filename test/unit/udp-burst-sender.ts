// A child process that sends UDP datagrams at a paced rate, for the engine's wake-up tests:
// traffic from another process reaches the engine while this one's JS is idle, as on a router.
import { spawn } from 'node:child_process';

// argv: port, bursts, size (datagrams per burst), gapUs (between bursts; a late burst is not
// made up for, so the rate never exceeds size/gap), stamp. Each datagram is 200
// bytes of 7 (a version the engine drops) unless stamp=1: then it carries the send time
// (process.hrtime.bigint(), CLOCK_MONOTONIC: comparable across processes) as 8 bytes.
// Prints how many it sent.
const SENDER = `
const dgram = require('node:dgram');
const [port, bursts, size, gapUs, stamp] = process.argv.slice(1).map(Number);
const s = dgram.createSocket('udp4');
s.on('error', () => {}); // ECONNREFUSED once the receiver closed: keep sending as told
const buf = Buffer.alloc(200, 7);
let sent = 0, b = 0, next = process.hrtime.bigint();
s.connect(port, '127.0.0.1', () => {
  const step = () => {
    if (process.hrtime.bigint() >= next) {
      for (let i = 0; i < size; i++) {
        if (stamp) buf.writeBigUInt64BE(process.hrtime.bigint(), 0);
        s.send(buf, () => {});
      }
      sent += size;
      next += BigInt(gapUs * 1000);
      if (next < process.hrtime.bigint()) next = process.hrtime.bigint() + BigInt(gapUs * 1000);
      if (++b === bursts) return setTimeout(() => { console.log(sent); s.close(); }, 50);
    }
    setImmediate(step);
  };
  step();
});
`;

export function sendBursts(port: number, bursts: number, size: number, gapUs: number, stamp = false): Promise<number> {
  return new Promise((resolve, reject) => {
    const args = [port, bursts, size, gapUs, stamp ? 1 : 0].map(String);
    const c = spawn(process.execPath, ['-e', SENDER, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`sender exited ${code}`))));
  });
}
