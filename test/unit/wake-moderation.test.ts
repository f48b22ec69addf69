// Wake-up moderation on a real UDP socket: a child process sends bursts at a bulk-transfer
// rate, and the engine must drain them from its timer (fewer wake-ups, nothing lost), leave
// moderation when the stream stops, and never moderate an idle path.
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { PacketBatch, PacketEngine, openUdp } from '../../shared/packet-engine.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// Sends `bursts` bursts of `size` 200-byte datagrams, one burst every `gapUs` µs, then prints
// how many it sent. A bulk TCP flow at ~1 Gbit/s reaches a router in bursts like these.
// catchUp 0: a burst that is late is not made up for, so the rate never exceeds size/gap.
const SENDER = `
const dgram = require('node:dgram');
const [port, bursts, size, gapUs, catchUp] = process.argv.slice(1).map(Number);
const s = dgram.createSocket('udp4');
s.on('error', () => {}); // ECONNREFUSED once the receiver closed: keep sending as told
const buf = Buffer.alloc(200, 7);
let sent = 0, b = 0, next = process.hrtime.bigint();
s.connect(port, '127.0.0.1', () => {
  const step = () => {
    if (process.hrtime.bigint() >= next) {
      for (let i = 0; i < size; i++) s.send(buf, () => {});
      sent += size;
      next += BigInt(gapUs * 1000);
      if (!catchUp && next < process.hrtime.bigint()) next = process.hrtime.bigint() + BigInt(gapUs * 1000);
      if (++b === bursts) return setTimeout(() => { console.log(sent); s.close(); }, 50);
    }
    setImmediate(step);
  };
  step();
});
`;

function sendBursts(port: number, bursts: number, size: number, gapUs: number, catchUp = true): Promise<number> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, ['-e', SENDER, String(port), String(bursts), String(size), String(gapUs)], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (d) => (out += d));
    c.on('error', reject);
    c.on('exit', (code) => (code === 0 ? resolve(Number(out.trim())) : reject(new Error(`sender exited ${code}`))));
  });
}

const opened: PacketEngine[] = [];
afterEach(() => {
  for (const e of opened.splice(0)) e.close();
});

/** An engine whose JS poller drains the socket on every wake-up (or moderation tick). */
function receiver(): { e: PacketEngine; port: number; received: () => number } {
  const u = openUdp('127.0.0.1', 0, { bufferBytes: 8 << 20 });
  const e = new PacketEngine({ udpFd: u.fd, mtu: 1400 });
  opened.push(e);
  const batch = new PacketBatch(64);
  let n = 0;
  e.onUdpReadable(() => {
    for (let r = e.udpRecv(batch); r > 0; r = e.udpRecv(batch)) n += r;
  });
  return { e, port: u.port, received: () => n };
}

async function settle(received: () => number, want: number): Promise<void> {
  const end = Date.now() + 3000;
  while (received() < want && Date.now() < end) await sleep(10);
}

describe('wake-up moderation', () => {
  it('drains a bulk-rate stream from its timer: far fewer wake-ups, nothing lost, then back to waking per packet', async () => {
    // 20 datagrams every 250 µs = 80,000/s: inside the moderated band (40,000..150,000/s)
    const off = receiver();
    const sentOff = await sendBursts(off.port, 2000, 20, 250);
    await settle(off.received, sentOff);
    const so = off.e.stats();
    expect(off.received()).toBe(sentOff);
    expect(so.moderation_ticks).toBe(0);

    const on = receiver();
    on.e.setModeration(1000);
    const sentOn = await sendBursts(on.port, 2000, 20, 250);
    await settle(on.received, sentOn);
    const s = on.e.stats();
    expect(on.received()).toBe(sentOn); // nothing lost while the fd was not polled
    expect(s.moderation_entries).toBeGreaterThan(0);
    expect(s.moderation_ticks).toBeGreaterThan(50);
    // Per 1 ms tick ~4 bursts arrive: wake-ups + ticks well below one per burst (measured
    // ~0.3 of the unmoderated count; the bound leaves room for a loaded machine).
    console.log(
      `moderation off: ${so.udp_wakeups} wake-ups for ${sentOff} datagrams; ` +
        `on (1000 µs): ${s.udp_wakeups} wake-ups + ${s.moderation_ticks} ticks for ${sentOn}, ${s.moderation_entries} entries`,
    );
    expect(s.udp_wakeups + s.moderation_ticks).toBeLessThan(0.7 * so.udp_wakeups);

    // The stream stopped: the next datagram wakes the engine at once (no tick in between).
    await sleep(50);
    const before = on.e.stats();
    await sendBursts(on.port, 1, 1, 0);
    await settle(on.received, sentOn + 1);
    const after = on.e.stats();
    expect(on.received()).toBe(sentOn + 1);
    expect(after.udp_wakeups - before.udp_wakeups).toBe(1);
    expect(after.moderation_ticks - before.moderation_ticks).toBe(0);
  });

  it('does not moderate a slow stream (below the bulk rate), nor when turned off while moderated', async () => {
    // 2 datagrams every 200 µs = 10,000/s: dense wake-ups, but request/response rates
    const slow = receiver();
    slow.e.setModeration(1000);
    const sent = await sendBursts(slow.port, 1500, 2, 200, false);
    await settle(slow.received, sent);
    expect(slow.received()).toBe(sent);
    expect(slow.e.stats().moderation_entries).toBe(0);

    // Turned off while a stream is moderated: the socket is polled again, nothing is lost.
    const r = receiver();
    r.e.setModeration(5000);
    const sending = sendBursts(r.port, 2000, 20, 250);
    const end = Date.now() + 3000; // until the child is up and its stream moderated
    while (r.e.stats().moderation_entries === 0 && Date.now() < end) await sleep(5);
    expect(r.e.stats().moderation_entries).toBeGreaterThan(0);
    r.e.setModeration(0);
    const total = await sending;
    await settle(r.received, total);
    expect(r.received()).toBe(total);
    const ticks = r.e.stats().moderation_ticks;
    await sendBursts(r.port, 1, 1, 0);
    await settle(r.received, total + 1);
    expect(r.received()).toBe(total + 1);
    expect(r.e.stats().moderation_ticks).toBe(ticks);
  });

  it('rejects bad periods with one clear error, and closing while moderated is clean', async () => {
    const r = receiver();
    expect(() => r.e.setModeration(5)).toThrow(/0 \(off\) or 10\.\.100000/);
    expect(() => r.e.setModeration(100001)).toThrow(/0 \(off\) or 10\.\.100000/);
    expect(() => r.e.setModeration('x' as unknown as number)).toThrow(/us must be a number/);
    r.e.setModeration(20000);
    const sending = sendBursts(r.port, 4000, 20, 250);
    const end = Date.now() + 3000; // until the child is up and its stream moderated
    while (r.e.stats().moderation_entries === 0 && Date.now() < end) await sleep(5);
    const entered = r.e.stats().moderation_entries;
    r.e.close(); // the timer handle closes with the engine; the process must not crash or hang
    await sending;
    expect(entered).toBeGreaterThan(0);
    expect(() => r.e.setModeration(500)).toThrow(/closed/);
  });
});
