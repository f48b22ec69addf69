// queue-VR: a FullVR behind NAT that accepts no inbound traffic (a limited-VR) opens its
// sessions itself; the others reach its site through its queue-VR, which relays.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupport, type Lab } from './topology.js';
import { blueNetwork, cloud, Overlay, waitFor } from './overlay-harness.js';

const support = await labSupport(['ip', 'nft', 'ping', 'curl']);
if (!support.ok) console.warn(`SKIP queue-VR lab tests: ${support.reason}`);

describe.skipIf(!support.ok)('queue-VR relay for a FullVR behind NAT', () => {
  let lab: Lab;
  let ov: Overlay;

  beforeAll(async () => {
    lab = await createLab({
      sites: [cloud('a', ['a1']), cloud('b', ['b1']), cloud('c', ['c1'], { fullvrBehindNat: true })],
    });
    ov = new Overlay(
      lab,
      [blueNetwork(['a', 'b', 'c'])],
      ['a', 'b', 'c'],
      { limited: { c: 'a' } },
    );
    await ov.startAllFullvrs();
    // The limited FullVR opens its sessions to both public FullVRs.
    await waitFor(async () => (await ov.fullvrStatus('c')).peers.every((p: any) => p.session > 0), 15_000);
    // c1 without shortcuts: with them, it would also open sessions straight to FullVRs a and b
    // (it can reach out), and b1's traffic to it would go FullVR b -> c1, past the relay tested here.
    await Promise.all([ov.startTinyvr('a1', 'a', 1), ov.startTinyvr('b1', 'b', 1), ov.startTinyvr('c1', 'c', 1, ['--no-shortcuts'])]);
  }, 90_000);

  afterAll(async () => {
    await ov?.stop();
    await lab?.cleanup();
  });

  it('the limited FullVR has no inbound path: a datagram to its site from outside never reaches it', async () => {
    const before = (await ov.fullvrStatus('c')).engine.rx_datagrams;
    const script = `const s=require('dgram').createSocket('udp4');s.send(Buffer.alloc(64),4789,'${lab.site('c').fullvrPublic}',()=>s.close());`;
    await lab.exec('inet', [process.execPath, '-e', script]);
    await new Promise((r) => setTimeout(r, 300));
    const st = await ov.fullvrStatus('c');
    // Keepalive answers from its peers may arrive meanwhile, but never our 64-byte garbage (it would count as bad_version).
    expect(st.engine.bad_version).toBe(0);
    expect(st.engine.rx_datagrams).toBeGreaterThanOrEqual(before);
    expect(st.peers.every((p: any) => !p.limited)).toBe(true);
  });

  it('traffic to and from the limited site works both ways, relayed by the queue-VR', async () => {
    const before = (await ov.fullvrStatus('a')).counters;
    const p1 = await lab.ping('b1', '10.3.0.11', { count: 3 });
    if (!p1.ok) for (const x of ['a', 'b', 'c']) { const st = await ov.fullvrStatus(x); console.log('DBG', x, p1.output.split('\n').slice(-3).join(' '), JSON.stringify({ d: st.drops, e: st.engine, c: st.counters, p: st.peers })); }
    expect(p1.ok).toBe(true);
    expect((await lab.ping('c1', '10.2.0.11', { count: 3 })).ok).toBe(true);
    expect((await lab.ping('a1', '10.3.0.11', { count: 3 })).ok).toBe(true);
    expect((await lab.ping('c1', '10.1.0.11', { count: 3 })).ok).toBe(true);
    const after = (await ov.fullvrStatus('a')).counters;
    // b1 -> c1 requests went B -> A (queue-VR) -> C.
    expect(after.relayed - before.relayed).toBeGreaterThanOrEqual(3);
  });

  it('TCP across the relay', async () => {
    const srv = lab.spawn('c1', ['iperf3', '-s', '-1', '--forceflush', '-B', '10.3.0.11']);
    await srv.waitForLog(/Server listening/, 5000);
    const r = await lab.exec('b1', ['iperf3', '-c', '10.3.0.11', '-t', '2', '-J'], { timeoutMs: 20_000 });
    expect(JSON.parse(r.stdout).end.sum_received.bytes).toBeGreaterThan(100_000);
    await srv.exited;
  }, 30_000);
});

describe.skipIf(!support.ok)('queue-VR over TCP when the limited site blocks UDP', () => {
  let lab: Lab;
  let ov: Overlay;

  beforeAll(async () => {
    lab = await createLab({
      sites: [cloud('a', ['a1']), cloud('b', ['b1']), cloud('c', ['c1'], { fullvrBehindNat: true })],
    });
    // Site c's firewall lets no UDP out to the internet (TCP still passes).
    await lab.exec('c-rt', ['nft', '-f', '-'], {
      input: 'table inet tvblock {\n  chain blockudp {\n    type filter hook forward priority -10;\n    oifname "wan" meta l4proto udp counter drop\n  }\n}\n',
    });
    ov = new Overlay(
      lab,
      [blueNetwork(['a', 'b', 'c'])],
      ['a', 'b', 'c'],
      { limited: { c: 'a' } },
    );
    await ov.startAllFullvrs();
    await ov.fullvrs.get('c')!.proc!.waitForLog(/falling back to TCP/, 10_000);
    await waitFor(async () => (await ov.fullvrStatus('c')).peers.some((p: any) => p.id === 1 && p.session > 0), 15_000);
    await Promise.all([ov.startTinyvr('a1', 'a', 1), ov.startTinyvr('b1', 'b', 1), ov.startTinyvr('c1', 'c', 1)]);
  }, 90_000);

  afterAll(async () => {
    await ov?.stop();
    await lab?.cleanup();
  });

  it('UDP from the site is really blocked', async () => {
    const out = (await lab.exec('c-rt', ['nft', 'list', 'table', 'inet', 'tvblock'])).stdout;
    expect(Number(/counter packets (\d+)/.exec(out)?.[1] ?? 0)).toBeGreaterThan(0);
  });

  it('traffic to and from the limited site works both ways over the TCP channel', async () => {
    expect((await lab.ping('b1', '10.3.0.11', { count: 3 })).ok).toBe(true);
    expect((await lab.ping('c1', '10.2.0.11', { count: 3 })).ok).toBe(true);
    expect((await lab.ping('a1', '10.3.0.11', { count: 3 })).ok).toBe(true);
    expect((await lab.ping('c1', '10.1.0.11', { count: 3 })).ok).toBe(true);
    // The limited FullVR reaches its queue-VR through the loopback end of the TCP relay.
    const q = (await ov.fullvrStatus('c')).peers.find((p: any) => p.id === 1);
    expect(q.endpoint).toMatch(/^127\.0\.0\.1:/);
  });
});
