// Wake-up moderation on a real UDP socket: a child process sends bursts at a bulk-transfer
// rate, and the engine must drain them from its timer (fewer wake-ups, nothing lost), leave
// moderation when the stream stops, and never moderate an idle path.
import { afterEach, describe, expect, it } from 'vitest';
import { PacketBatch, PacketEngine, openUdp } from '../../shared/packet-engine.js';
import { sendBursts } from './udp-burst-sender.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

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
    const sent = await sendBursts(slow.port, 1500, 2, 200);
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
