// TinyVR failover: its primary FullVR dies during a TCP transfer; the TinyVR moves to its
// secondary within 5 s, keeps its address, and the TCP connection survives.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLab, labSupport, type Lab } from './topology.js';
import { blueNetwork, cloud, Overlay, TINYVR_CONTROL, waitFor } from './overlay-harness.js';

const support = await labSupport(['ip', 'nft', 'ping', 'curl', 'iperf3']);
if (!support.ok) console.warn(`SKIP failover lab tests: ${support.reason}`);

describe.skipIf(!support.ok)('TinyVR failover to a secondary FullVR', () => {
  let lab: Lab;
  let ov: Overlay;

  beforeAll(async () => {
    lab = await createLab({
      sites: [cloud('a', ['a1']), cloud('b', ['b1']), cloud('c', ['c1'])],
    });
    ov = new Overlay(
      lab,
      [blueNetwork(['a', 'b', 'c'])],
      ['a', 'b', 'c'],
    );
    await ov.startAllFullvrs();
    await ov.waitPeersUp();
    const b = ov.fullvrs.get('b')!;
    await ov.startTinyvr('a1', 'a', 1, ['--secondary', ov.endpoint('b'), '--secondary-key', b.publicKey]);
    await ov.startTinyvr('b1', 'b', 1);
    await ov.startTinyvr('c1', 'c', 1);
  }, 60_000);

  afterAll(async () => {
    await ov?.stop();
    await lab?.cleanup();
  });

  it('kill the primary during iperf3: failover within 5 s, same address, TCP connection intact', async () => {
    const srv = lab.spawn('b1', ['iperf3', '-s', '-1', '--forceflush', '-B', '10.2.0.11']);
    await srv.waitForLog(/Server listening/, 5000);
    const client = lab.exec('a1', ['iperf3', '-c', '10.2.0.11', '-t', '14', '-J'], { timeoutMs: 60_000, check: false });
    await new Promise((r) => setTimeout(r, 3000));
    const killedAt = Date.now();
    await ov.fullvrs.get('a')!.proc!.kill('SIGKILL');
    const tv = ov.tinyvrs.get('a1')!;
    await tv.waitForLog(/WARN tinyvr failover /, 8000);
    const line = tv.log().split('\n').find((l) => / WARN tinyvr failover /.test(l))!;
    const failoverMs = Date.parse(line.split(' ')[0]) - killedAt;
    console.log(`failover ${failoverMs} ms after the primary was killed`);
    expect(failoverMs).toBeLessThan(5000);
    const r = await client;
    expect(r.code, r.stderr).toBe(0);
    const res = JSON.parse(r.stdout);
    const intervals = res.intervals.map((i: any) => i.sum.bits_per_second / 1e6);
    console.log('iperf3 Mbit/s per second:', intervals.map((x: number) => x.toFixed(0)).join(' '));
    // The same connection carried data again after the move.
    expect(intervals.slice(-4).every((x: number) => x > 1)).toBe(true);
    expect(res.end.sum_received.bytes).toBeGreaterThan(0);
    const st = await ov.status('a1', TINYVR_CONTROL);
    expect(st.onSecondary).toBe(true);
    expect(st.join.address).toBe('10.1.0.11');
    expect((await lab.ping('b1', '10.1.0.11', { count: 2 })).ok).toBe(true);
    // A third site learned from the secondary (authenticated CTRL message) where a1 is now.
    expect((await lab.ping('c1', '10.1.0.11', { count: 2 })).ok).toBe(true);
    expect((await ov.fullvrStatus('c')).counters.host_routes).toBeGreaterThanOrEqual(1);
    await srv.exited;
  }, 60_000);
});
