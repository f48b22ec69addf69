// End-to-end: three simulated sites (two NATed clouds with anti-spoofing, one LAN behind
// its FullVR), real TinyVRs and FullVRs, real ping / TCP / UDP traffic.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLab, labSupport, type Lab } from './topology.js';
import { Overlay, waitFor } from './overlay-harness.js';

const support = await labSupport(['ip', 'nft', 'ping', 'iperf3', 'curl', 'python3']);
if (!support.ok) console.warn(`SKIP overlay lab tests: ${support.reason}`);

const BLUE = 1;
const RED = 2;

/** Packets the kernel dropped at vm's TUN queue (its TinyVR did not read them in time). */
async function tunTxDropped(lab: Lab, vm: string): Promise<number> {
  const j = JSON.parse((await lab.exec(vm, ['ip', '-s', '-j', 'link', 'show', 'dev', 'tvn0'])).stdout);
  return Number(j[0]?.stats64?.tx?.dropped ?? 0);
}

describe.skipIf(!support.ok)('overlay across three sites', () => {
  let lab: Lab;
  let ov: Overlay;
  const files = mkdtempSync(join(tmpdir(), 'tinyvine-files-'));

  beforeAll(async () => {
    lab = await createLab({
      sites: [
        { name: 'a', kind: 'cloud', publicPrefix: '198.51.100.0/25', subnet: '10.1.0.0/24', vms: ['a1', 'a2', 'a3'] },
        { name: 'b', kind: 'cloud', publicPrefix: '203.0.113.0/25', subnet: '10.2.0.0/24', vms: ['b1', 'b2'] },
        { name: 'c', kind: 'lan', publicPrefix: '192.0.2.0/25', subnet: '10.3.0.0/24', hosts: ['h1'], overlayRoutes: ['10.1.0.0/24', '10.2.0.0/24'] },
      ],
    });
    ov = new Overlay(
      lab,
      [
        {
          id: BLUE,
          name: 'blue',
          mode: 'physical',
          sites: [
            { site: 'a', subnet: '10.1.0.0/24' },
            { site: 'b', subnet: '10.2.0.0/24' },
            { site: 'c', subnet: '10.3.0.0/24' },
          ],
          lan: [{ site: 'c', prefix: '10.3.0.0/24' }],
          token: 'blue-token-0123456789abcdef',
        },
        {
          id: RED,
          name: 'red',
          mode: 'physical',
          sites: [
            { site: 'a', subnet: '10.1.0.0/24' },
            { site: 'b', subnet: '10.2.0.0/24' },
          ],
          token: 'red-token-0123456789abcdef',
        },
      ],
      ['a', 'b', 'c'],
    );
    await ov.startAllFullvrs();
    // Peers handshake with each other before members arrive.
    await ov.waitPeersUp();
    await Promise.all([
      ov.startTinyvr('a1', 'a', BLUE),
      ov.startTinyvr('b1', 'b', BLUE),
      ov.startTinyvr('a2', 'a', RED),
      ov.startTinyvr('b2', 'b', RED),
    ]);
  }, 90_000);

  afterAll(async () => {
    await ov?.stop();
    await lab?.cleanup();
    rmSync(files, { recursive: true, force: true });
  });

  it('the TinyVR routes exactly the other sites of its network, with its own address as source', async () => {
    const r = await lab.exec('a1', ['ip', '-j', 'route', 'show', 'dev', 'tvn0']);
    const routes = JSON.parse(r.stdout) as Array<{ dst: string; prefsrc?: string }>;
    expect(routes.map((x) => x.dst).sort()).toEqual(['10.2.0.0/24', '10.3.0.0/24']);
    for (const x of routes) expect(x.prefsrc).toBe('10.1.0.11');
    const def = await lab.exec('a1', ['ip', '-j', 'route', 'show', 'default']);
    expect(JSON.stringify(JSON.parse(def.stdout))).not.toContain('tvn0');
  });

  it('cross-site VM <-> VM: ICMP both ways', async () => {
    expect((await lab.ping('a1', '10.2.0.11', { count: 3 })).ok).toBe(true);
    expect((await lab.ping('b1', '10.1.0.11', { count: 3 })).ok).toBe(true);
  });

  it('VM <-> LAN host without software: ICMP both ways, and LAN host <-> other cloud', async () => {
    expect((await lab.ping('a1', '10.3.0.10', { count: 3 })).ok).toBe(true);
    expect((await lab.ping('h1', '10.1.0.11', { count: 3 })).ok).toBe(true);
    expect((await lab.ping('h1', '10.2.0.11', { count: 3 })).ok).toBe(true);
    expect((await lab.ping('b1', '10.3.0.10', { count: 3 })).ok).toBe(true);
  });

  it('TCP and UDP cross-site both directions (iperf3)', async () => {
    const fvBefore = (await ov.fullvrStatus('b')).engine;
    for (const [client, server, addr] of [
      ['a1', 'b1', '10.2.0.11'],
      ['b1', 'a1', '10.1.0.11'],
      ['h1', 'a1', '10.1.0.11'],
      ['a1', 'h1', '10.3.0.10'],
    ] as const) {
      const srv = lab.spawn(server, ['iperf3', '-s', '-1', '--forceflush', '-B', addr]);
      await srv.waitForLog(/Server listening/, 5000);
      const tcp = await lab.exec(client, ['iperf3', '-c', addr, '-t', '1', '-J'], { timeoutMs: 20_000 });
      const t = JSON.parse(tcp.stdout);
      expect(t.end.sum_received.bytes).toBeGreaterThan(100_000);
      await srv.exited;
      const srvU = lab.spawn(server, ['iperf3', '-s', '-1', '--forceflush', '-B', addr]);
      await srvU.waitForLog(/Server listening/, 5000);
      const udp = await lab.exec(client, ['iperf3', '-c', addr, '-u', '-b', '20M', '-t', '1', '-J'], { timeoutMs: 20_000 });
      const u = JSON.parse(udp.stdout);
      const rx = u.end.sum_received ?? u.end.sum;
      expect(rx.packets - (rx.lost_packets ?? 0)).toBeGreaterThan(100);
      await srvU.exited;
    }
    // FullVR b forwarded most of it from its verdict cache, without calling JS.
    const fv = (await ov.fullvrStatus('b')).engine;
    const rxd = fv.rx_datagrams - fvBefore.rx_datagrams;
    const cached = fv.cache_routed - fvBefore.cache_routed;
    console.log(`FullVR b: ${rxd} datagrams in, ${cached} forwarded from the verdict cache, ${fv.js_batches - fvBefore.js_batches} batches decided in JS`);
    expect(cached).toBeGreaterThan(rxd / 2);
  }, 90_000);

  it('a bulk stream is drained by wake-up moderation without loss; an idle ping afterwards is not moderated', async () => {
    const routers = async () => ({
      a1: (await ov.tinyvrStatus('a1')).engine,
      fa: (await ov.fullvrStatus('a')).engine,
      fb: (await ov.fullvrStatus('b')).engine,
      b1: (await ov.tinyvrStatus('b1')).engine,
    });
    const ticks = (x: Awaited<ReturnType<typeof routers>>, y: typeof x) =>
      Object.fromEntries(Object.keys(x).map((k) => [k, y[k as keyof typeof x].moderation_ticks - x[k as keyof typeof x].moderation_ticks]));
    // 600 Mbit/s of 1400-byte datagrams = ~54,000 packets/s: inside the moderated band.
    // UDP has no flow control: when the host does not run a1's TinyVR for ~9 ms (its TUN queue
    // holds 500 packets), packets drop at a1's TUN however the engine works. Measured 0-0.23 %
    // with and without moderation on a quiet host, up to 11 % on a busy one (with either GHASH,
    // all of it at a1's TUN queue). So up to 3 attempts: an fd left undrained or a moderation
    // that drains too slowly loses in every attempt; the host's noise rarely lasts through three.
    let rx: { packets: number; lost_packets: number } = { packets: 0, lost_packets: 0 };
    let t: Record<string, number> = {};
    for (let attempt = 1; attempt <= 3; attempt++) {
      const before = await routers();
      const drops0 = await tunTxDropped(lab, 'a1');
      const srv = lab.spawn('b1', ['iperf3', '-s', '-1', '--forceflush', '-B', '10.2.0.11']);
      await srv.waitForLog(/Server listening/, 5000);
      // -w 4M: with the default 212 KB the receiving iperf3's own socket overflows (RcvbufErrors
      // in b1, a few %, moderated or not); what is left is the overlay's loss.
      const r = await lab.exec('a1', ['iperf3', '-c', '10.2.0.11', '-u', '-b', '600M', '-l', '1400', '-w', '4M', '-t', '2', '-J'], { timeoutMs: 20_000 });
      await srv.exited;
      const u = JSON.parse(r.stdout);
      rx = u.end.sum_received ?? u.end.sum;
      t = ticks(before, await routers());
      const atTun = (await tunTxDropped(lab, 'a1')) - drops0;
      console.log(`UDP 600M, attempt ${attempt}: ${rx.packets} packets, ${rx.lost_packets} lost (${atTun} dropped at a1's TUN queue); moderation ticks ${JSON.stringify(t)}`);
      expect(rx.packets).toBeGreaterThan(50_000);
      if (rx.lost_packets / rx.packets < 0.03) break;
    }
    expect(rx.lost_packets / rx.packets).toBeLessThan(0.03);
    expect(t.a1).toBeGreaterThan(0); // the sending TinyVR drained its TUN from the timer
    // a1 sends to site b over its shortcut: FullVR b (not a) carries the stream.
    expect(t.fb).toBeGreaterThan(0);
    // Idle again: each ping is handled on its own wake-up, with no moderation tick.
    await new Promise((res) => setTimeout(res, 200));
    const idle = await routers();
    expect((await lab.ping('a1', '10.2.0.11', { count: 5, interval: 0.2 })).received).toBe(5);
    expect(Object.values(ticks(idle, await routers())).every((n) => n === 0)).toBe(true);
  }, 60_000);

  it('intra-site VM <-> VM traffic never enters the overlay', async () => {
    const before = { tv: (await ov.tinyvrStatus('a1')).engine, fv: (await ov.fullvrStatus('a')).counters };
    expect((await lab.ping('a1', '10.1.0.12', { count: 10, interval: 0.05 })).ok).toBe(true);
    expect((await lab.ping('a1', '10.1.0.13', { count: 10, interval: 0.05 })).ok).toBe(true);
    const srv = lab.spawn('a3', ['iperf3', '-s', '-1', '--forceflush', '-B', '10.1.0.13']);
    await srv.waitForLog(/Server listening/, 5000);
    await lab.exec('a1', ['iperf3', '-c', '10.1.0.13', '-t', '1', '-J'], { timeoutMs: 20_000 });
    await srv.exited;
    const after = { tv: (await ov.tinyvrStatus('a1')).engine, fv: (await ov.fullvrStatus('a')).counters };
    // Keepalives arrive meanwhile, but the FullVR routes nothing: no packet entered the overlay.
    expect(after.tv.tun_rx - before.tv.tun_rx).toBe(0);
    expect(after.tv.tun_tx - before.tv.tun_tx).toBe(0);
    expect(after.fv.routed - before.fv.routed).toBe(0);
  }, 30_000);

  it('two virtual networks on the same FullVRs cannot reach each other', async () => {
    // red works within itself...
    expect((await lab.ping('a2', '10.2.0.12', { count: 2 })).ok).toBe(true);
    const before = (await ov.fullvrStatus('b')).drops.wrong_network;
    // ...but blue a1 -> red b2 and red a2 -> blue b1 are dropped at the destination FullVR.
    expect((await lab.ping('a1', '10.2.0.12', { count: 3, waitS: 1 })).received).toBe(0);
    expect((await lab.ping('a2', '10.2.0.11', { count: 3, waitS: 1 })).received).toBe(0);
    const after = (await ov.fullvrStatus('b')).drops.wrong_network;
    expect(after - before).toBeGreaterThanOrEqual(6);
    // and red cannot reach blue's LAN host at all: red's GNDT has no site c.
    expect((await lab.ping('a2', '10.3.0.10', { count: 2, waitS: 1 })).received).toBe(0);
  });

  it('a member cannot send with a source address that is not its own (unknown source dropped)', async () => {
    // a1 sends to site b over its shortcut: FullVR b is the one that checks (and drops).
    await ov.openShortcut('a1', '10.2.0.11', 2);
    await lab.exec('a1', ['ip', 'addr', 'add', '10.9.9.9/32', 'dev', 'lo']);
    const before = (await ov.fullvrStatus('b')).drops;
    const r = await lab.ping('a1', '10.2.0.11', { count: 3, source: '10.9.9.9', waitS: 1 });
    expect(r.received).toBe(0);
    const after = (await ov.fullvrStatus('b')).drops;
    expect(after.unknown_source - before.unknown_source).toBeGreaterThanOrEqual(3);
    await lab.exec('a1', ['ip', 'addr', 'del', '10.9.9.9/32', 'dev', 'lo']);
  });

  it('forged, replayed and malformed datagrams injected at a FullVR are dropped and counted', async () => {
    const fv = lab.site('a').fullvrPublic!;
    // Capture real DATA datagrams on their way into FullVR a while a1 pings b1.
    const pcap = join(files, 'cap.pcap');
    const cap = lab.spawn('a-fvr', ['tcpdump', '-i', 'any', '-U', '-c', '6', '-w', pcap, `udp and dst host ${fv} and dst port 4789 and greater 100`]);
    await new Promise((r) => setTimeout(r, 500));
    await lab.ping('a1', '10.2.0.11', { count: 6, interval: 0.1 });
    await cap.exited;
    const datagrams = readPcapUdpPayloads(pcap);
    expect(datagrams.length).toBeGreaterThan(0);
    const st0 = await ov.fullvrStatus('a');
    const member = st0.members.find((m: any) => m.address === '10.1.0.11');
    // Forged: a real session index with a random key; truncated; wrong version; garbage.
    // Forged: a real session, a counter never used (so not a replay), and a tag made without the key.
    const forged = Buffer.from(datagrams[0]);
    forged.writeBigUInt64BE(1n << 40n, 16);
    randomBytes(16).copy(forged, forged.length - 16);
    const wrongVersion = Buffer.from(datagrams[0]);
    wrongVersion[0] = 9;
    const injections = [
      ...datagrams.map((d) => d.toString('hex')), // replays
      forged.toString('hex'),
      wrongVersion.toString('hex'),
      datagrams[0].subarray(0, 10).toString('hex'),
      randomBytes(200).toString('hex'),
    ];
    const script = `const s=require('dgram').createSocket('udp4');const l=${JSON.stringify(injections)};let i=0;const n=()=>{if(i>=l.length){s.close();return}s.send(Buffer.from(l[i++],'hex'),4789,'${fv}',n)};n();`;
    await lab.exec('inet', [process.execPath, '-e', script]);
    await new Promise((r) => setTimeout(r, 300));
    const st1 = await ov.fullvrStatus('a');
    const d = (k: string) => (st1.engine[k] ?? 0) - (st0.engine[k] ?? 0);
    expect(d('replay')).toBeGreaterThanOrEqual(datagrams.length);
    expect(d('bad_tag')).toBeGreaterThanOrEqual(1);
    expect(d('bad_version')).toBeGreaterThanOrEqual(1);
    expect(d('truncated')).toBeGreaterThanOrEqual(1);
    // None of them was routed.
    expect(st1.counters.routed - st0.counters.routed).toBe(0);
    expect(member).toBeTruthy();
  });

  it('a 100 MB transfer across sites arrives byte-identical', async () => {
    const src = join(files, 'blob');
    writeFileSync(src, randomBytes(100 * 1024 * 1024));
    const want = createHash('sha256').update(require_('node:fs').readFileSync(src)).digest('hex');
    const srv = lab.spawn('b1', ['python3', '-m', 'http.server', '8080', '--bind', '10.2.0.11', '--directory', files]);
    await waitFor(async () => (await lab.exec('a1', ['curl', '-sf', '-o', '/dev/null', 'http://10.2.0.11:8080/'], { check: false })).code === 0, 10_000);
    const out = join(files, 'blob.received');
    await lab.exec('a1', ['curl', '-sf', '--max-time', '60', '-o', out, 'http://10.2.0.11:8080/blob'], { timeoutMs: 70_000 });
    const got = createHash('sha256').update(require_('node:fs').readFileSync(out)).digest('hex');
    expect(got).toBe(want);
    await srv.kill();
  }, 90_000);

  it('TCP from a LAN host (MTU 1500) across the overlay does not stall on MTU', async () => {
    const srv = lab.spawn('a1', ['python3', '-m', 'http.server', '8081', '--bind', '10.1.0.11', '--directory', files]);
    await waitFor(async () => (await lab.exec('h1', ['curl', '-sf', '-o', '/dev/null', 'http://10.1.0.11:8081/'], { check: false })).code === 0, 10_000);
    const r = await lab.exec('h1', ['curl', '-sf', '--max-time', '30', '-o', '/dev/null', '-w', '%{size_download}', 'http://10.1.0.11:8081/blob'], { timeoutMs: 40_000 });
    expect(Number(r.stdout)).toBe(100 * 1024 * 1024);
    await srv.kill();
  }, 60_000);

  it('a 1500-byte ping with DF gets "fragmentation needed", never silence', async () => {
    // From a VM: the TUN's MTU makes the kernel refuse it locally with the MTU to use.
    const vm = await lab.ping('a1', '10.2.0.11', { count: 1, size: 1472, df: true, waitS: 1 });
    expect(vm.received).toBe(0);
    expect(vm.output).toMatch(/mtu[ =]+1432|message too long/i);
    // From a LAN host: its FullVR answers with ICMP fragmentation needed (mtu 1432).
    const lan = await lab.ping('h1', '10.1.0.11', { count: 1, size: 1472, df: true, waitS: 1 });
    expect(lan.output).toMatch(/Frag needed|mtu = 1432|mtu=1432/i);
    // And the largest packet that fits goes through.
    expect((await lab.ping('a1', '10.2.0.11', { count: 1, size: 1432 - 28, df: true })).ok).toBe(true);
  });

  it('a FullVR killed and restarted: connectivity is back within 5 s without touching the TinyVRs', async () => {
    const f = ov.fullvrs.get('b')!;
    await f.proc!.kill('SIGKILL');
    const t0 = Date.now();
    await ov.startFullvr('b');
    // Measure from the restart: ping every 100 ms until a reply comes back.
    const back = await waitFor(async () => (await lab.ping('a1', '10.2.0.11', { count: 1, waitS: 0.3 })).ok, 8000, 50).then(() => Date.now() - t0);
    // And the other way (b1's own FullVR restarted: it rejoins after its next probe, and its
    // peer sessions are redone), within the same budget from the restart.
    const backB = await waitFor(async () => (await lab.ping('b1', '10.1.0.11', { count: 1, waitS: 0.3 })).ok, 8000, 50).then(() => Date.now() - t0);
    console.log(`connectivity back ${back} ms (a1 -> b1) and ${backB} ms (b1 -> a1) after FullVR restart`);
    expect(back).toBeLessThan(5000);
    expect(backB).toBeLessThan(5000);
    expect((await lab.ping('b1', '10.1.0.11', { count: 2 })).ok).toBe(true);
  }, 30_000);

  it('stopping a TinyVR (SIGTERM or SIGKILL) leaves no route or TUN behind', async () => {
    for (const [vm, sig] of [
      ['a2', 'SIGTERM'],
      ['b2', 'SIGKILL'],
    ] as const) {
      const h = ov.tinyvrs.get(vm)!;
      await h.kill(sig);
      const links = await lab.exec(vm, ['ip', '-o', 'link', 'show']);
      expect(links.stdout).not.toContain('tvn0');
      const routes = await lab.exec(vm, ['ip', 'route', 'show']);
      expect(routes.stdout).not.toContain('tvn0');
      expect(routes.stdout).not.toMatch(/10\.(1|2|3)\.0\.0\/24 dev (?!eth)/);
    }
  });
});

// vitest runs ESM; fs is needed synchronously above.
import * as fsSync from 'node:fs';
function require_(_: 'node:fs') {
  return fsSync;
}

/** UDP payloads of a pcap written by tcpdump -i any (Linux cooked capture v1 or v2). */
function readPcapUdpPayloads(path: string): Buffer[] {
  const b = fsSync.readFileSync(path);
  const le = b.readUInt32LE(0) === 0xa1b2c3d4;
  const u32 = (o: number) => (le ? b.readUInt32LE(o) : b.readUInt32BE(o));
  const linktype = u32(20);
  const l2 = linktype === 113 ? 16 : linktype === 276 ? 20 : linktype === 1 ? 14 : 0;
  const out: Buffer[] = [];
  for (let o = 24; o + 16 <= b.length; ) {
    const incl = u32(o + 8);
    const pkt = b.subarray(o + 16, o + 16 + incl);
    o += 16 + incl;
    const ip = pkt.subarray(l2);
    if (ip.length < 28 || ip[0] >> 4 !== 4 || ip[9] !== 17) continue;
    const ihl = (ip[0] & 15) * 4;
    out.push(Buffer.from(ip.subarray(ihl + 8, ip.readUInt16BE(2))));
  }
  return out;
}
