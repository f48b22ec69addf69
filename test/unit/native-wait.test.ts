// Native waiting: after a data wake-up an engine whose pollers all run native pumps waits
// for the next datagram itself instead of returning to Node's loop (see wake.c). It must
// still hand the thread back whenever anything else is due: JS timers on time, other
// sockets of the process served at once, JS callbacks (control messages) answered.
import dgram from 'node:dgram';
import { afterEach, describe, expect, it } from 'vitest';
import { PacketBatch, PacketEngine, openUdp } from '../../shared/packet-engine.js';
import { sendBursts } from './udp-burst-sender.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

const opened: PacketEngine[] = [];
const socks: dgram.Socket[] = [];
afterEach(() => {
  for (const e of opened.splice(0)) e.close();
  for (const s of socks.splice(0)) s.close();
});

/** A router engine (routeUdpNative, as a FullVR runs it) on a loopback socket. */
function router(): { e: PacketEngine; port: number; jsCalls: () => number } {
  const u = openUdp('127.0.0.1', 0, { bufferBytes: 4 << 20 });
  const e = new PacketEngine({ udpFd: u.fd, mtu: 1400 });
  opened.push(e);
  let calls = 0;
  e.routeUdpNative(new PacketBatch(64), new Int32Array([1]), new Uint8Array(64), () => calls++);
  return { e, port: u.port, jsCalls: () => calls };
}

/** Wakes the engine once from the loop: it then waits natively until something else is due. */
async function prime(port: number): Promise<void> {
  await sendBursts(port, 1, 1, 0);
}

describe('native waiting', () => {
  it('takes datagrams from another process without returning to the loop', async () => {
    const r = router();
    await prime(r.port);
    const sent = await sendBursts(r.port, 2000, 1, 500); // 1 datagram every 500 µs, ~1 s
    await sleep(50);
    const st = r.e.stats();
    expect(st.rx_datagrams).toBe(sent + 1);
    expect(st.bad_version).toBe(sent + 1); // 200 bytes of 7: dropped natively, no JS call
    expect(r.jsCalls()).toBe(0);
    // Most wake-ups came to the engine's own wait, not through the loop.
    console.log(`native waiting: ${st.native_wakeups} of ${st.udp_wakeups} wake-ups native`);
    expect(st.native_wakeups).toBeGreaterThan(st.udp_wakeups / 2);
  });

  it("fires JS timers on time while it waits, also when no datagram comes to end the wait", async () => {
    const r = router();
    // A datagram when the sender starts (the engine then waits natively), the next 150 ms
    // later, while JS sleeps on a chain of 10 ms timers: a wait that ignored the loop's next
    // timer would hold the timer until the second datagram.
    const sending = sendBursts(r.port, 2, 1, 150_000);
    const late: number[] = [];
    for (let i = 0; i < 100 && r.e.stats().rx_datagrams < 2; i++) {
      const t = performance.now();
      await sleep(10);
      late.push(performance.now() - t - 10);
    }
    await sending;
    console.log(`native waiting: timer lateness median ${median(late).toFixed(2)} ms, max ${Math.max(...late).toFixed(2)} ms over ${late.length}`);
    expect(r.e.stats().rx_datagrams).toBe(2);
    expect(Math.max(...late)).toBeLessThan(40);
    expect(late.length).toBeGreaterThan(10); // both datagrams came while the timers ran
  });

  it("hands the thread back at once when another of the process's sockets has data", async () => {
    const r = router();
    await prime(r.port);
    // A plain JS socket in the same process: its datagrams carry their send time.
    const js = dgram.createSocket('udp4');
    socks.push(js);
    const delays: number[] = [];
    js.on('message', (m) => delays.push(Number(process.hrtime.bigint() - m.readBigUInt64BE(0)) / 1e6));
    await new Promise<void>((res) => js.bind(0, '127.0.0.1', () => res()));
    const jsPort = js.address().port;
    // Keep the engine busy in its wait (a datagram every 500 µs) while the JS socket gets
    // one every 20 ms.
    const busy = sendBursts(r.port, 3000, 1, 500);
    const stamped = await sendBursts(jsPort, 50, 1, 20_000, true);
    await busy;
    await sleep(50);
    expect(delays.length).toBe(stamped);
    console.log(`native waiting: JS socket delay median ${median(delays).toFixed(2)} ms, max ${Math.max(...delays).toFixed(2)} ms; engine ${r.e.stats().native_wakeups} native wake-ups`);
    expect(r.e.stats().native_wakeups).toBeGreaterThan(100);
    // Served at the next wake of the backend fd, not after the engine's stream ends.
    expect(median(delays)).toBeLessThan(5);
  });

  it('drains a moderated stream from ticks it waits for itself, loses nothing, and leaves moderation when the stream ends', async () => {
    const r = router();
    r.e.setModeration(1000);
    await prime(r.port);
    // 20 datagrams every 250 µs = 80,000/s: inside the moderated band (40,000..150,000/s)
    const sent = await sendBursts(r.port, 2000, 20, 250);
    await sleep(50);
    const st = r.e.stats();
    console.log(`native waiting, moderated: ${st.moderation_entries} entries, ${st.moderation_ticks} ticks, ${st.native_wakeups} native wake-ups + ticks, ${st.udp_wakeups} data wake-ups for ${sent}`);
    expect(st.rx_datagrams).toBe(sent + 1);
    expect(st.moderation_entries).toBeGreaterThan(0);
    expect(st.moderation_ticks).toBeGreaterThan(100);
    // the ticks came to the engine's own wait: native_wakeups counts them with the data wake-ups
    expect(st.native_wakeups - (st.udp_wakeups - 1)).toBeGreaterThan(st.moderation_ticks / 2);
    // the stream ended: moderation is over, a single datagram wakes the engine at once
    const before = r.e.stats();
    const t = performance.now();
    await sendBursts(r.port, 1, 1, 0);
    expect(r.e.stats().rx_datagrams).toBe(before.rx_datagrams + 1);
    expect(r.e.stats().moderation_ticks - before.moderation_ticks).toBeLessThan(5);
    expect(performance.now() - t).toBeLessThan(5000);
  });
});
