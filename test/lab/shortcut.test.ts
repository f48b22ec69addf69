// Shortcuts: a TinyVR sends another site's traffic straight to that site's FullVR (which
// its own FullVR vouched for it to), so the path crosses one FullVR instead of two, both
// ways; where the direct path dies, traffic goes through its own FullVR again within seconds.
// They open on the first packet to that site and close when idle, losing nothing in flight.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, labSupport, type Lab } from './topology.js';
import { blueNetwork, cloud, Overlay, tcpTransferSha, waitFor } from './overlay-harness.js';

const support = await labSupport(['ip', 'nft', 'ping', 'iperf3', 'curl']);
if (!support.ok) console.warn(`SKIP shortcut lab tests: ${support.reason}`);

describe.skipIf(!support.ok)('shortcuts to the FullVR of the destination site', () => {
  let lab: Lab;
  let ov: Overlay;
  const files = mkdtempSync(join(tmpdir(), 'tinyvine-shortcut-'));
  const rx = async (site: string) => (await ov.fullvrStatus(site)).engine.rx_datagrams as number;
  /** Datagrams FullVR `site` sent to its peer FullVRs (current sessions). */
  const toPeers = async (site: string) => (await ov.fullvrStatus(site)).peers.reduce((n: number, p: any) => n + p.txPackets, 0) as number;
  const shortcutTo = async (vm: string, vr: number) => (await ov.tinyvrStatus(vm)).shortcuts.find((s: any) => s.vr === vr);
  let beforeTraffic: any[] = [];

  beforeAll(async () => {
    // a2 closes idle shortcuts after 2 s; b2 takes none, so FullVR b delivers its packets for
    // a2 over a2's shortcut session (FullVR b knows a2 as a shortcut member).
    lab = await createLab({ sites: [cloud('a', ['a1', 'a2']), cloud('b', ['b1', 'b2']), cloud('c', ['c1'])] });
    // FullVR c takes no shortcuts (shortcuts: false): a1's shortcut there is refused.
    ov = new Overlay(lab, [blueNetwork(['a', 'b', 'c'])], ['a', 'b', 'c'], { shortcutsOff: ['c'] });
    await ov.startAllFullvrs();
    await ov.waitPeersUp();
    await Promise.all([
      ov.startTinyvr('a1', 'a', 1),
      ov.startTinyvr('b1', 'b', 1),
      ov.startTinyvr('c1', 'c', 1, ['--no-shortcuts']),
      ov.startTinyvr('a2', 'a', 1, ['--shortcut-idle', '2']),
      ov.startTinyvr('b2', 'b', 1, ['--no-shortcuts']),
    ]);
    beforeTraffic = (await ov.tinyvrStatus('a1')).shortcuts;
    // FullVR ids follow the site order: a 1, b 2, c 3. A ping's request opens a1's shortcut to
    // FullVR b, its reply b1's to FullVR a; a1's to FullVR c is refused.
    await ov.openShortcut('a1', '10.2.0.11', 2);
    await ov.openShortcut('b1', '10.1.0.11', 1);
    await lab.ping('a1', '10.3.0.11', { count: 1, waitS: 1 });
  }, 60_000);

  afterAll(async () => {
    await ov?.stop();
    await lab?.cleanup();
    rmSync(files, { recursive: true, force: true });
  });

  it('a TinyVR has a shortcut to each other site that takes them, opened by traffic; its routes are exactly that site', async () => {
    // offered, but nothing sent yet: no session
    expect(beforeTraffic.map((x: any) => [x.vr, x.state, x.session])).toEqual([
      [2, 'idle', undefined],
      [3, 'idle', undefined],
    ]);
    await waitFor(async () => (await shortcutTo('a1', 3))?.state === 'refused', 10_000);
    const st = await ov.tinyvrStatus('a1');
    const byVr = Object.fromEntries(st.shortcuts.map((s: any) => [s.vr, s]));
    expect(byVr[2]).toMatchObject({ state: 'up', routes: ['10.2.0.0/24'] });
    expect(byVr[3]).toMatchObject({ state: 'refused', routes: [], reason: 'this FullVR takes no shortcuts (shortcuts: false)' });
    expect(byVr[1]).toBeUndefined(); // never to its own FullVR
    // Tickets are secrets: not in the status output.
    expect(JSON.stringify(st)).not.toMatch(/ticket"\s*:\s*"/);
    // FullVR b counts a1 as a shortcut member, not as one of its own members.
    const fb = await ov.fullvrStatus('b');
    expect(fb.members.find((m: any) => m.address === '10.1.0.11')).toMatchObject({ shortcut: true });
    expect(fb.counters.shortcut_joins).toBeGreaterThanOrEqual(1);
  });

  it('VM <-> VM across sites crosses only the destination site\'s FullVR, both ways, and arrives byte-identical', async () => {
    const before = { a: await rx('a'), b: await rx('b'), peersA: await toPeers('a'), peersB: await toPeers('b') };
    expect((await lab.ping('a1', '10.2.0.11', { count: 20, interval: 0.05 })).ok).toBe(true);
    expect((await lab.ping('b1', '10.1.0.11', { count: 20, interval: 0.05 })).ok).toBe(true);
    // 20 MB of random data, TCP through the offload path, both directions checked by sha256.
    const blob = randomBytes(20 * 1024 * 1024);
    const want = createHash('sha256').update(blob).digest('hex');
    writeFileSync(join(files, 'blob'), blob);
    for (const [from, to, addr] of [
      ['a1', 'b1', '10.2.0.11'],
      ['b1', 'a1', '10.1.0.11'],
    ] as const) {
      expect(await tcpTransferSha(lab, from, to, addr, 5201, join(files, 'blob'))).toContain(`sha ${want}`);
    }
    const d = { a: (await rx('a')) - before.a, b: (await rx('b')) - before.b, peersA: (await toPeers('a')) - before.peersA, peersB: (await toPeers('b')) - before.peersB };
    console.log(`during 2x20 pings + 2x20 MB: datagrams in at FullVR a ${d.a}, at FullVR b ${d.b}; sent FullVR to FullVR: a ${d.peersA}, b ${d.peersB}`);
    // a1 -> b1 crossed FullVR b only, b1 -> a1 FullVR a only: both carried a 20 MB stream
    // (~15,000 datagrams), and nothing went from one FullVR to the other but keepalives.
    expect(d.a).toBeGreaterThan(14_000);
    expect(d.b).toBeGreaterThan(14_000);
    expect(d.peersA).toBeLessThan(30);
    expect(d.peersB).toBeLessThan(30);
  }, 90_000);

  it('--no-shortcuts: every packet goes through the own FullVR', async () => {
    expect((await ov.tinyvrStatus('c1')).shortcuts).toEqual([]);
    const before = await rx('c');
    expect((await lab.ping('c1', '10.2.0.11', { count: 10, interval: 0.05 })).ok).toBe(true);
    expect((await rx('c')) - before).toBeGreaterThanOrEqual(20); // 10 requests in, 10 replies in
  });

  it('a refused shortcut: traffic to that site goes through the own FullVR', async () => {
    const before = await toPeers('a');
    expect((await lab.ping('a1', '10.3.0.11', { count: 10, interval: 0.05 })).ok).toBe(true);
    expect((await toPeers('a')) - before).toBeGreaterThanOrEqual(10); // a1's requests, FullVR a -> FullVR c
  });

  it('a shortcut whose path dies falls back to the own FullVR within seconds, both ways, and comes back', async () => {
    const bPub = lab.site('b').fullvrPublic!;
    const table = `tvsc${process.pid}`;
    // Cut a1 <-> FullVR b only: everything else (a1 <-> FullVR a <-> FullVR b) still works.
    await lab.exec('a1', ['nft', 'add', 'table', 'inet', table]);
    try {
      for (const [hook, dir] of [
        ['output', 'daddr'],
        ['input', 'saddr'],
      ]) {
        await lab.exec('a1', ['nft', 'add', 'chain', 'inet', table, hook, `{ type filter hook ${hook} priority 0 ; }`]);
        await lab.exec('a1', ['nft', 'add', 'rule', 'inet', table, hook, 'ip', dir, bPub, 'ip', 'protocol', 'udp', 'drop']);
      }
      const cutAt = Date.now();
      // Replies must come back both ways: a1 -> b1 (a1 stops using the shortcut) and the
      // replies b1 -> a1 (FullVR b forgets a1 as a shortcut member, routes it via FullVR a).
      const back = await waitFor(async () => (await lab.ping('a1', '10.2.0.11', { count: 1, waitS: 0.3 })).ok, 12_000, 100).then(() => Date.now() - cutAt);
      console.log(`path a1 <-> FullVR b cut: replies again after ${back} ms`);
      expect(back).toBeLessThan(8000);
      expect((await shortcutTo('a1', 2)).state).not.toBe('up');
      const before = { a: await rx('a'), b: await rx('b') };
      expect((await lab.ping('a1', '10.2.0.11', { count: 10, interval: 0.05 })).ok).toBe(true);
      expect((await lab.ping('b1', '10.1.0.11', { count: 10, interval: 0.05 })).ok).toBe(true);
      // Everything crosses FullVR a now (b1's own shortcut there delivers a1's packets to b1):
      // both pings' requests and replies; FullVR b sees keepalives only.
      expect((await rx('a')) - before.a).toBeGreaterThanOrEqual(40);
      expect((await rx('b')) - before.b).toBeLessThan(10);
    } finally {
      await lab.exec('a1', ['nft', 'delete', 'table', 'inet', table], { check: false });
    }
    // The handshake retries (backing off) find the path again.
    await waitFor(async () => (await shortcutTo('a1', 2))?.state === 'up', 20_000, 200);
    const before = await rx('b');
    expect((await lab.ping('a1', '10.2.0.11', { count: 10, interval: 0.05 })).ok).toBe(true);
    expect((await rx('b')) - before).toBeGreaterThanOrEqual(10); // a1's requests take the shortcut again
  }, 60_000);

  it('a restarted destination FullVR: the shortcut is redone at once', async () => {
    const f = ov.fullvrs.get('b')!;
    await f.proc!.kill('SIGKILL');
    const t0 = Date.now();
    await ov.startFullvr('b');
    const back = await waitFor(async () => (await lab.ping('a1', '10.2.0.11', { count: 1, waitS: 0.3 })).ok, 8000, 50).then(() => Date.now() - t0);
    console.log(`connectivity back ${back} ms after FullVR b restarted`);
    expect(back).toBeLessThan(5000);
    await waitFor(async () => (await shortcutTo('a1', 2))?.state === 'up', 10_000, 200);
  }, 30_000);
  it('an idle shortcut closes: the peer forgets the member, and the next packet opens it again', async () => {
    expect((await shortcutTo('a2', 2)).state).toBe('idle'); // a2 sent nothing yet
    const t0 = Date.now();
    await ov.openShortcut('a2', '10.2.0.11', 2);
    const opened = Date.now() - t0;
    expect((await ov.fullvrStatus('b')).members.find((m: any) => m.address === '10.1.0.12')).toMatchObject({ shortcut: true });
    // Silence: closed after 2 s idle, then idle once the session drained; with no keepalive
    // from a2 any more, FullVR b forgets the member.
    const t1 = Date.now();
    await waitFor(async () => (await shortcutTo('a2', 2)).state === 'closing', 10_000, 100);
    const closing = Date.now() - t1;
    await waitFor(async () => (await shortcutTo('a2', 2)).state === 'idle', 15_000, 200);
    const idle = Date.now() - t1;
    expect((await ov.fullvrStatus('b')).members.find((m: any) => m.address === '10.1.0.12')).toBeUndefined();
    const st = await ov.tinyvrStatus('a2');
    expect(st.counters.shortcuts_closed_idle).toBeGreaterThanOrEqual(1);
    expect(st.shortcuts.find((x: any) => x.vr === 2).session).toBeUndefined();
    console.log(`a2's shortcut: up ${opened} ms after its first ping; closing ${closing} ms after the last, idle ${idle} ms after it`);
    expect(closing).toBeLessThan(5000);
    // The next packet goes through FullVR a at once and opens the shortcut again.
    expect((await lab.ping('a2', '10.2.0.11', { count: 1, waitS: 1 })).ok).toBe(true);
    await ov.openShortcut('a2', '10.2.0.11', 2);
  }, 60_000);

  it('packets arriving for a closing shortcut are delivered (none lost while the peer forgets it)', async () => {
    await ov.openShortcut('a2', '10.2.0.11', 2);
    await waitFor(async () => (await shortcutTo('a2', 2)).state === 'closing', 10_000, 50);
    // 1.5 s later (a2 sent its last keepalive on it 1-2.5 s ago; a TinyVR that let the session
    // go at once would have done so by now), b2 -> a2: FullVR b delivers over a2's shortcut
    // session until it forgets a2 (4-5 s after that keepalive), then through FullVR a; a2 only
    // listens, so it sends nothing back.
    const srv = lab.spawn('a2', ['python3', '-c', `import socket
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('10.1.0.12',5300));s.settimeout(6);print('listening',flush=True)
n=0
try:
  while True:
    s.recv(2048);n+=1
except socket.timeout: pass
print('got',n,flush=True)`]);
    await srv.waitForLog(/listening/, 5000);
    await new Promise((r) => setTimeout(r, 1500));
    const rxBefore = (await ov.tinyvrStatus('a2')).engine.rx_datagrams;
    await lab.exec('b2', ['python3', '-c', `import socket,time
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)
for i in range(80):
  s.sendto(b'x'*200,('10.1.0.12',5300));time.sleep(0.1)`], { timeoutMs: 30_000 });
    await srv.exited;
    const st = await ov.tinyvrStatus('a2');
    console.log(`b2 -> a2 while a2's shortcut closed: ${srv.log().trim().split('\n').pop()}; a2's shortcut now ${st.shortcuts.find((x: any) => x.vr === 2).state}`);
    expect(srv.log()).toContain('got 80');
    expect(st.engine.rx_datagrams - rxBefore).toBeGreaterThanOrEqual(80);
  }, 60_000);
});
