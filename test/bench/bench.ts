// TinyViNe-TS benchmark (not a test):
//  - tcp: data-plane speed from VM a1 to VM b1 across two NATed cloud sites, over the overlay
//    (every auth mode), plain kernel forwarding, OpenVPN and tinc (both without crypto), in
//    namespace labs of identical topology (one for the references and the default mode, one
//    per other auth mode, so that each mode has FullVRs of its own): TCP 1 stream, TCP 4
//    streams, UDP at a fixed 500 Mbit/s with loss, CPU of every forwarding process at a paced
//    1 Gbit/s TCP load, and ping RTT;
//  - join (join-bench.ts): GET /join requests/s and latency of the download server, and the
//    time from `curl ... /join | sh` to the first packet across the overlay.
//
//   npm run bench -- [--only tcp|join] [--json FILE] [--seconds N] [--rounds N] [--no-modes]
//                    [--no-p4] [--no-udp] [--no-1g] [--moderation-us N] [--keep-logs]
//
// Within each kind of measurement the paths are measured alternately (kernel, openvpn, tinc,
// overlay, overlay modes, kernel, ...) and each reports the median of its rounds. Exits non-zero with a one-line message if
// any measurement failed (after printing what was measured). Everything (namespaces,
// processes, temp files) is removed on success, failure and SIGINT/SIGTERM/SIGHUP.
import { rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { createLab, labSupport, type Lab } from '../lab/topology.js';
import { waitFor, type NetworkSpec } from '../lab/overlay-harness.js';
import { BenchOverlay, findCli } from './bench-overlay.js';
import { formatMachineProfile, measureMachineProfile } from './machine-profile.js';
import { startOpenvpn, type OpenvpnTunnel } from './openvpn.js';
import { startTinc, type TincTunnel } from './tinc.js';
import { firstLine, iperfTcp, iperfUdp, median, pingRtt, round1, type CpuUsage, type TcpSample, type UdpSample } from './measure.js';
import { runJoinBench, type JoinBenchResult } from './join-bench.js';
import { gmacImpl } from '../../shared/packet-engine.js';

const USAGE = `Usage: node dist/bench.mjs [--only tcp|join] [--json FILE] [--seconds N] [--rounds N] [--no-modes] [--no-p4] [--no-udp] [--no-1g] [--moderation-us N] [--plain-lab] [--keep-logs] [--join-cpu-prof DIR]
  --only WHAT   run only the data-plane part (tcp) or only the join part (join); default both
  --json FILE   also write the results as JSON to FILE
  --seconds N   iperf3 duration per sample, and GET /join load duration (default 10)
  --rounds N    rounds of alternating samples per path; the median is reported (default 3)
  --no-modes    measure the overlay in its default auth mode (gmac) only
  --no-p4       skip TCP with 4 parallel streams (kernel, openvpn, tinc, overlay)
  --no-udp      skip UDP at a fixed offered 500 Mbit/s (kernel, openvpn, tinc, overlay)
  --no-1g       skip the CPU measurement at a paced 1 Gbit/s TCP load (overlay, openvpn, tinc)
  --moderation-us N  the overlay routers' wake-up moderation (default: theirs, 500); unless 0,
                an unmoderated gmac overlay is measured alongside (TCP 1 stream, 1 Gbit/s, RTT)
                The overlay takes direct paths (TinyVR -> TinyVR through both NATs, introduced
                by the FullVRs: directPaths, on by default); measured alongside (TCP 1 stream,
                1 Gbit/s, RTT): overlay-via-fullvr (gmac, FullVRs with directPaths: false: the
                shortcut TinyVR -> FullVR b -> TinyVR), overlay-via-home (gmac, --no-shortcuts:
                TinyVR -> FullVR a -> FullVR b -> TinyVR), and overlay-loop-wait (gmac, routers
                with TINYVINE_NATIVE_WAIT=0: every wake-up a turn of Node's event loop), and, where
                gmac uses our GHASH, overlay-ghash-openssl (gmac with TINYVINE_GMAC=openssl)
  --plain-lab   do not model the cloud hosts' transmit path: the lab's routing, NAT and
                bridging then run inside the system calls of whichever process sent (as in the
                tests' lab), and count towards its CPU. By default (with ethtool) they run in
                kernel threads, as a real VM's transmissions are handled by its host
  --keep-logs   keep the lab logs dir (FullVR/TinyVR/OpenVPN/server logs) after the run
  --join-cpu-prof DIR   run the GET /join load-test server with node --cpu-prof, profile into DIR`;

type Mode = 'hmac' | 'gmac' | 'aes-gcm' | 'chacha' | 'none';
// The first is the default mode: its figure is reported as `overlay`.
const MODES: Mode[] = ['gmac', 'hmac', 'aes-gcm', 'chacha', 'none'];

type Variant = { key: string; mode: Mode; moderation?: number; direct: boolean; noShortcuts?: boolean; env?: Record<string, string> };

/** The GHASH behind gmac here; the routers the bench starts inherit its environment, so theirs. */
function ghashImpl(): string {
  try {
    return gmacImpl();
  } catch (e) {
    return `unknown (${(e as Error).message})`;
  }
}

/**
 * Overlay variants of a run: key (path name), auth mode, wake-up moderation (undefined: the
 * routers' default), and the route: a direct path TinyVR -> TinyVR (the default), the
 * shortcut to the destination site's FullVR, or everything through the own FullVR.
 */
function variantsOf(opt: { modes: Mode[]; moderation?: number }): Variant[] {
  const mod = opt.moderation === undefined ? {} : { moderation: opt.moderation };
  const v: Variant[] = opt.modes.map((mode, i) => ({ key: i === 0 ? 'overlay' : `overlay-${mode}`, mode, direct: true, ...mod }));
  if (opt.moderation !== 0) v.push({ key: 'overlay-unmoderated', mode: MODES[0]!, direct: true, moderation: 0 });
  v.push({ key: 'overlay-via-fullvr', mode: MODES[0]!, direct: false, ...mod });
  v.push({ key: 'overlay-via-home', mode: MODES[0]!, direct: false, ...mod, noShortcuts: true });
  // the routers with native waiting off: every wake-up is a turn of Node's event loop
  v.push({ key: 'overlay-loop-wait', mode: MODES[0]!, direct: true, ...mod, env: { TINYVINE_NATIVE_WAIT: '0' } });
  // gmac with OpenSSL's GHASH (one block per instruction) where ours runs: what ours saves
  if (ghashImpl() !== 'openssl') v.push({ key: 'overlay-ghash-openssl', mode: MODES[0]!, direct: true, ...mod, env: { TINYVINE_GMAC: 'openssl' } });
  return v;
}

/** The route a variant's packets take from a1 to b1. */
function routeOf(v: Variant): string {
  if (v.direct) return 'TinyVR → TinyVR over the direct path, through NAT a and NAT b, no FullVR';
  return v.noShortcuts
    ? 'TinyVR → FullVR a → FullVR b → TinyVR, no shortcuts'
    : 'TinyVR → FullVR b → TinyVR over the shortcut, replies TinyVR → FullVR a → TinyVR';
}

// ---------------------------------------------------------------------------
// arguments
// ---------------------------------------------------------------------------

function parseCli() {
  let v;
  try {
    v = parseArgs({
      args: process.argv.slice(2),
      options: {
        json: { type: 'string' },
        seconds: { type: 'string' },
        rounds: { type: 'string' },
        'no-modes': { type: 'boolean' },
        'no-p4': { type: 'boolean' },
        'no-udp': { type: 'boolean' },
        'no-1g': { type: 'boolean' },
        'moderation-us': { type: 'string' },
        'keep-logs': { type: 'boolean' },
        'plain-lab': { type: 'boolean' },
        only: { type: 'string' },
        'join-cpu-prof': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    console.error(`bench: ${(e as Error).message}\n${USAGE}`);
    process.exit(2);
  }
  if (v.help) {
    console.log(USAGE);
    process.exit(0);
  }
  const int = (s: string | undefined, def: number, name: string, max: number) => {
    if (s === undefined) return def;
    const n = Number(s);
    if (!Number.isInteger(n) || n < 1 || n > max) {
      console.error(`bench: --${name} must be an integer 1..${max}`);
      process.exit(2);
    }
    return n;
  };
  let moderation: number | undefined;
  if (v['moderation-us'] !== undefined) {
    moderation = Number(v['moderation-us']);
    if (!Number.isInteger(moderation) || (moderation !== 0 && (moderation < 10 || moderation > 100000))) {
      console.error('bench: --moderation-us must be 0 (off) or an integer 10..100000');
      process.exit(2);
    }
  }
  if (v.only !== undefined && v.only !== 'tcp' && v.only !== 'join') {
    console.error(`bench: --only takes tcp or join, not "${v.only}"\n${USAGE}`);
    process.exit(2);
  }
  return {
    only: v.only as 'tcp' | 'join' | undefined,
    joinCpuProf: v['join-cpu-prof'],
    json: v.json,
    seconds: int(v.seconds, 10, 'seconds', 120),
    rounds: int(v.rounds, 3, 'rounds', 9),
    modes: v['no-modes'] ? ([MODES[0]] as Mode[]) : MODES,
    p4: v['no-p4'] !== true,
    udp: v['no-udp'] !== true,
    at1g: v['no-1g'] !== true,
    moderation,
    keepLogs: v['keep-logs'] === true,
    plainLab: v['plain-lab'] === true,
  };
}

// ---------------------------------------------------------------------------
// cleanup on signals / forced exit (the lab removes its namespaces and processes itself)
// ---------------------------------------------------------------------------

const tempDirs = new Set<string>();
function removeTempDirs(): void {
  for (const d of tempDirs) {
    try {
      rmSync(d, { recursive: true, force: true });
    } catch {
      /* best effort */
    }
  }
  tempDirs.clear();
}
process.on('exit', removeTempDirs);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(sig, () => {
    process.stderr.write(`bench: ${sig}: cleaning up and exiting\n`);
    // process 'exit' runs the lab's synchronous cleanup (processes, namespaces) and ours
    process.exit(128 + ({ SIGHUP: 1, SIGINT: 2, SIGTERM: 15 } as const)[sig]);
  });
}

// ---------------------------------------------------------------------------
// results
// ---------------------------------------------------------------------------

/** Samples of one path in one kind of measurement (one per round). */
interface Series<T> {
  key: string;
  samples: T[];
  errors: string[];
}

interface PathResult extends Series<TcpSample> {
  label: string;
  rttUs: number | null;
}

const errors: string[] = [];
const problems: string[] = [];

function fail(what: string, e: unknown): void {
  const msg = (e as Error)?.message ?? String(e);
  errors.push(`${what}: ${msg.split('\n')[0]}`);
  console.error(`bench: ${what} failed: ${msg.split('\n').slice(0, 6).join('\n  ')}`);
}

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', timeout: 5000 }).trim();
  } catch {
    return '';
  }
}

const fmtCpu = (c: CpuUsage): string =>
  Object.entries(c)
    .map(([k, v]) => `${k}=${v ?? '-'}`)
    .join(' ');

/** Per-key median of the CPU figures of some samples (null if there are none). */
function cpuMedianOf(samples: ReadonlyArray<{ cpu: CpuUsage }>): Record<string, number | null> | null {
  if (samples.length === 0) return null;
  const out: Record<string, number | null> = {};
  for (const k of Object.keys(samples[0]!.cpu)) {
    const m = median(samples.map((s) => s.cpu[k]).filter((x): x is number => typeof x === 'number'));
    out[k] = m === null ? null : round1(m);
  }
  return out;
}

const medianOf = (xs: ReadonlyArray<number | null | undefined>): number | null => {
  const m = median(xs.filter((x): x is number => typeof x === 'number'));
  return m === null ? null : round1(m);
};

/** MTU of the device `node` routes `dst` through (null if it cannot be read). */
async function routeMtu(lab: Lab, node: string, dst: string): Promise<number | null> {
  const r = await lab.exec(node, ['ip', '-o', 'route', 'get', dst], { check: false });
  const dev = / dev (\S+)/.exec(r.stdout)?.[1];
  if (!dev) return null;
  const l = await lab.exec(node, ['ip', '-o', 'link', 'show', 'dev', dev], { check: false });
  const m = / mtu (\d+)/.exec(l.stdout);
  return m ? Number(m[1]) : null;
}

/** Left-aligned text columns, right-aligned numeric ones (`right` lists their indexes). */
function table(hdr: string[], rows: string[][], right: number[]): string[] {
  const widths = hdr.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]) =>
    row
      .map((c, i) => (right.includes(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [fmt(hdr), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)];
}

// ---------------------------------------------------------------------------
// tcp: the data plane — overlay, kernel forwarding, OpenVPN and tinc
// ---------------------------------------------------------------------------

type Options = ReturnType<typeof parseCli>;

/** The iperf3 settings of the UDP and paced measurements. */
const UDP_RATE = '500M';
const UDP_LEN = 1400;
const UDP_WINDOW = '4M';
const PACED_RATE = '1G';
/** Pings per path per round for the RTT. */
const RTT_PINGS = 40;
// The overlay's route without its routers. With shortcuts a ping a1 -> b1 crosses
// a1 -> FullVR b -> b1 and its reply b1 -> FullVR a -> a1: twice the lab's "internet" where the
// kernel path (a1 -> FullVR b's namespace) crosses it once. Half the sum of the four
// VM <-> FullVR round trips (a1 <-> FullVR b is the kernel path itself) is what that route
// costs with no router on it; the rest of the overlay's RTT is the routers' passes.
const ROUTE_LEGS: ReadonlyArray<readonly [string, string, 'a' | 'b']> = [
  ['leg_a1_fvr_a', 'a1', 'a'],
  ['leg_b1_fvr_a', 'b1', 'a'],
  ['leg_b1_fvr_b', 'b1', 'b'],
];
// A direct path's route is the kernel's, one router further (NAT b, in front of b1): a ping
// a1 -> that router's public address is its floor, without the last veth to b1.
const DIRECT_LEG = 'leg_a1_rt_b';
/** Paths measured at the paced rate. */
const AT1G_KEYS = ['overlay', 'overlay-unmoderated', 'overlay-via-fullvr', 'overlay-via-home', 'overlay-loop-wait', 'overlay-ghash-openssl', 'openvpn', 'tinc'];

/** A paced-load sample: the TCP figures and the median ping RTT while it ran. */
type LoadedSample = TcpSample & { rttLoadedUs: number | null };

/** Whether the bench's labs model the cloud hosts' transmit path (LabSpec.hostTx), and the line that says so. */
interface HostTxModel {
  on: boolean;
  note: string;
}

function hostTxModel(plainLab: boolean): HostTxModel {
  if (plainLab) return { on: false, note: 'lab: plain (--plain-lab): its routing, NAT and bridging run inside the senders\' system calls and count towards their CPU' };
  if (!sh('sh', ['-c', 'command -v ethtool'])) {
    return { on: false, note: 'lab: plain, ethtool is missing (Debian: ethtool): its routing, NAT and bridging run inside the senders\' system calls and count towards their CPU' };
  }
  return { on: true, note: 'lab: cloud hosts\' transmit path modeled: beyond each VM\'s and FullVR\'s veth the lab\'s routing, NAT and bridging run in kernel threads (veth NAPI threaded), not in the senders\' system calls' };
}

/** Table lines (after the common header) and JSON fields of the data-plane part; null if it cannot run. */
async function runTcp(opt: Options, cli: string, hostTx: HostTxModel): Promise<{ lines: string[]; json: Record<string, unknown> } | null> {
  const support = await labSupport(['ip', 'nft', 'ping', 'iperf3', 'curl', 'openvpn']);
  if (!support.ok) {
    console.error(`bench: tcp: cannot run: ${support.reason}`);
    errors.push(`tcp: cannot run: ${support.reason}`);
    return null;
  }

  // Every lab has the same two clouds with one VM each: a1 (client) and b1 (server).
  const newLab = () =>
    createLab({
      sites: [
        { name: 'a', kind: 'cloud', publicPrefix: '198.51.100.0/25', subnet: '10.1.0.0/24', vms: ['a1'] },
        { name: 'b', kind: 'cloud', publicPrefix: '203.0.113.0/25', subnet: '10.2.0.0/24', vms: ['b1'] },
      ],
      keepLogs: opt.keepLogs,
      hostTx: hostTx.on,
    });
  const lab: Lab = await newLab();
  // One lab, and so one FullVR pair, per auth mode (the default one shares the reference
  // tunnels' lab): two FullVRs carry all their networks over one peer session, sealed in
  // the strongest mode any of those networks asks for, so sharing a pair would measure
  // every mode with aes-gcm between the FullVRs.
  // Overlay variants, each with a FullVR pair of its own: every auth mode, and (unless the run
  // is unmoderated anyway) the default mode with wake-up moderation off, to show what it does.
  const variants = variantsOf(opt);
  const modeLabs = new Map<string, { lab: Lab; ov: BenchOverlay | null }>();
  const labOf = (key: string): Lab => modeLabs.get(key)?.lab ?? lab;
  const ovOf = (key: string): BenchOverlay | null => modeLabs.get(key)?.ov ?? null;
  let vpn: OpenvpnTunnel | null = null;
  let tinc: TincTunnel | null = null;
  const fvrB = lab.publicAddr('b', 'fvr');
  const results = new Map<string, PathResult>();
  /** Median RTTs of the overlay route's legs (ROUTE_LEGS), µs. */
  const legRtt = new Map<string, number>();
  const p4 = new Map<string, Series<TcpSample>>();
  const udp = new Map<string, Series<UdpSample>>();
  const at1g = new Map<string, Series<LoadedSample>>();
  const extra: Record<string, unknown> = {};
  const modeUp = new Map<string, boolean>();
  const mtus: Record<string, number | null> = { kernel: null, overlay: null, openvpn: null, tinc: null };

  try {
    console.error(`bench: lab ${lab.prefix} built in ${Math.round(lab.buildMs)} ms; logs in ${lab.logsDir}`);

    // --- overlay: per auth mode a1 -> b1 over its own FullVR pair (the default, gmac, in `lab`)
    for (const [i, { key, mode, moderation, direct, noShortcuts, env }] of variants.entries()) {
      const network: NetworkSpec = {
        id: 1,
        name: `bench-${mode}`,
        mode: 'physical',
        auth: mode,
        sites: [
          { site: 'a', subnet: '10.1.0.0/24' },
          { site: 'b', subnet: '10.2.0.0/24' },
        ],
        token: `bench-${mode}-token-0123456789abcdef`,
      };
      try {
        const l = i === 0 ? lab : await newLab();
        const entry: { lab: Lab; ov: BenchOverlay | null } = { lab: l, ov: null };
        modeLabs.set(key, entry);
        const o = new BenchOverlay(l, [network], ['a', 'b'], cli, { ...(moderation === undefined ? {} : { moderationMicros: moderation }), directPaths: direct ? ['a', 'b'] : [] }, env);
        entry.ov = o;
        tempDirs.add(o.dir);
        await o.startAllFullvrs();
        await waitFor(async () => (await o.fullvrStatus('a')).peers.every((p: any) => p.session > 0), 15_000);
        // Shortcuts open on traffic and close when idle; between its rounds a variant's lab is
        // idle for minutes, so keep them open: each round measures the shortcut path throughout.
        // The same holds for direct paths (closed after the same idle time).
        const extra = [...(noShortcuts ? ['--no-shortcuts'] : ['--shortcut-idle', '0']), ...(direct ? [] : ['--no-direct'])];
        await Promise.all([o.startTinyvr('a1', 'a', 1, extra), o.startTinyvr('b1', 'b', 1, extra)]);
        // Measure the route the variant names: with direct paths, once a FullVR introduced the
        // TinyVRs (after the first shortcut came up) and their path is up at both ends (the
        // other shortcut may then never open: nothing goes that way); with shortcuts, only once
        // both are up (a ping's request opens a1's, its reply b1's).
        if (direct) await o.openDirect('a1', 'b1', 20_000);
        else if (!noShortcuts) await Promise.all([o.openShortcut('a1', l.addr('b1'), 2), o.openShortcut('b1', l.addr('a1'), 1)]);
        const p = await l.ping('a1', l.addr('b1'), { count: 3, interval: 0.2, waitS: 2 });
        if (p.received === 0) fail(`${key}: connectivity a1 -> b1`, new Error(`no ping reply\n${p.output}`));
        else modeUp.set(key, true);
        if (i === 0 && modeUp.get(key)) mtus.overlay = await routeMtu(l, 'a1', l.addr('b1'));
      } catch (e) {
        fail(`${key}: start`, e);
      }
    }
    // The reference tunnels get the overlay's TUN MTU, so that every tunnel carries the same
    // inner packets (and a 1400-byte UDP datagram fits all of them unfragmented).
    const refMtu = mtus.overlay ?? 1420;

    // --- openvpn: server in b-fvr on its public address, client in a1 (through NAT a)
    try {
      vpn = await startOpenvpn(lab, { serverNode: 'b-fvr', serverAddr: fvrB, clientNode: 'a1', mtu: refMtu, onDir: (d) => tempDirs.add(d) });
      const p = await lab.ping('a1', vpn.serverTunAddr, { count: 3, interval: 0.2, waitS: 2 });
      if (p.received === 0) throw new Error(`tunnel up but no ping reply over it\n${p.output}`);
      mtus.openvpn = await routeMtu(lab, 'a1', vpn.serverTunAddr);
    } catch (e) {
      fail('openvpn: start', e);
      await vpn?.stop().catch(() => undefined);
      vpn = null;
    }

    // --- tinc 1.0: server in b-fvr on its public address, client in a1 (through NAT a) connecting to it
    try {
      const tincSupport = await labSupport(['tincd']);
      if (!tincSupport.ok) throw new Error(tincSupport.reason);
      tinc = await startTinc(lab, { serverNode: 'b-fvr', serverAddr: fvrB, clientNode: 'a1', mtu: refMtu, onDir: (d) => tempDirs.add(d) });
      // the first packets trigger tinc's UDP key exchange; wait until one gets through
      const t = tinc;
      await waitFor(async () => (await lab.ping('a1', t.serverTunAddr, { count: 1, waitS: 1 })).received > 0, 15_000, 200);
      mtus.tinc = await routeMtu(lab, 'a1', tinc.serverTunAddr);
    } catch (e) {
      fail('tinc: start', e);
      await tinc?.stop().catch(() => undefined);
      tinc = null;
    }

    // --- kernel reference: a1 -> FullVR b's public address (a1 -> NAT router a -> inet -> b-fvr)
    let kernelOk = true;
    {
      const p = await lab.ping('a1', fvrB, { count: 3, interval: 0.2, waitS: 2 });
      if (p.received === 0) {
        kernelOk = false;
        fail('kernel: connectivity a1 -> ' + fvrB, new Error(p.output));
      }
      mtus.kernel = await routeMtu(lab, 'a1', fvrB);
    }

    // --- path table, in measuring order
    interface Path {
      key: string;
      label: string;
      lab: Lab;
      client: string;
      server: string;
      addr: string;
      port: number;
      up: boolean;
      pids: () => Record<string, number | undefined>;
    }
    const tincVersion = sh('tincd', ['--version']).split('\n')[0]?.replace(/ \(.*$/, '') ?? 'tinc';
    const paths: Path[] = [
      {
        key: 'kernel',
        lab,
        label: `kernel: a1 → b's public FullVR address ${fvrB} (same namespaces and NAT path, no overlay)`,
        client: 'a1',
        server: 'b-fvr',
        addr: fvrB,
        port: 5201,
        up: kernelOk,
        pids: () => ({}),
      },
      {
        key: 'openvpn',
        lab,
        label: `openvpn: a1 → 10.254.0.1 in b-fvr (OpenVPN 2.6 p2p UDP, no crypto, tun-mtu ${mtus.openvpn ?? refMtu}, 4 MB socket buffers, via NAT a)`,
        client: 'a1',
        server: 'b-fvr',
        addr: '10.254.0.1',
        port: 5202,
        up: vpn !== null,
        pids: () => ({ client: vpn?.client.pid, server: vpn?.server.pid }),
      },
      {
        key: 'tinc',
        lab,
        label: `tinc: a1 → 10.253.0.1 in b-fvr (${tincVersion}, router mode, UDP, Cipher none, Digest none, Compression 0, tun mtu ${mtus.tinc ?? refMtu}, 4 MB socket buffers, client ConnectTo server via NAT a)`,
        client: 'a1',
        server: 'b-fvr',
        addr: '10.253.0.1',
        port: 5203,
        up: tinc !== null,
        pids: () => ({ client: tinc?.client.pid, server: tinc?.server.pid }),
      },
      ...variants.map(
        (v, i): Path => ({
          key: v.key,
          label: `${v.key}: a1 → b1 (${routeOf(v)}, auth ${v.mode}, wake-up moderation ${v.moderation === undefined ? 'default' : v.moderation === 0 ? 'off' : `${v.moderation} µs`}${i === 0 ? `${mtus.overlay ? `, TUN mtu ${mtus.overlay}` : ''}, in the reference tunnels' lab` : ', in a lab of its own'})`,
          lab: labOf(v.key),
          client: 'a1',
          server: 'b1',
          addr: labOf(v.key).addr('b1'),
          port: 5204 + i,
          up: modeUp.get(v.key) === true,
          pids: () => ({
            tinyvr_a: ovOf(v.key)?.tinyvrs.get('a1')?.pid,
            fullvr_a: ovOf(v.key)?.fullvrs.get('a')?.proc?.pid,
            fullvr_b: ovOf(v.key)?.fullvrs.get('b')?.proc?.pid,
            tinyvr_b: ovOf(v.key)?.tinyvrs.get('b1')?.pid,
          }),
        }),
      ),
    ];
    for (const p of paths) results.set(p.key, { key: p.key, label: p.label, samples: [], errors: [], rttUs: null });
    const refKeys = ['kernel', 'openvpn', 'tinc', 'overlay'];
    const refPaths = paths.filter((p) => refKeys.includes(p.key));

    /** `rounds` rounds over `list`, alternating; each path's samples go to `into`. */
    const runRounds = async <T extends { cpu: CpuUsage }>(
      what: string,
      list: Path[],
      into: Map<string, Series<T>>,
      measure: (p: Path) => Promise<T>,
      describe: (s: T) => string,
      check?: (p: Path, r: number, s: T) => void,
    ): Promise<void> => {
      for (const p of list) if (!into.has(p.key)) into.set(p.key, { key: p.key, samples: [], errors: [] });
      for (let r = 1; r <= opt.rounds; r++) {
        for (const p of list) {
          const res = into.get(p.key)!;
          if (!p.up) {
            res.errors.push('not up');
            continue;
          }
          try {
            const s = await measure(p);
            res.samples.push(s);
            check?.(p, r, s);
            console.error(`bench: ${what} round ${r} ${p.key.padEnd(15)} ${describe(s)}  cpu% ${fmtCpu(s.cpu)}`);
          } catch (e) {
            res.errors.push(`round ${r}: ${(e as Error).message.split('\n')[0]}`);
            fail(`${what} ${p.key} round ${r}`, e);
          }
        }
      }
    };
    const stallCheck = (what: string) => (p: Path, r: number, s: TcpSample) => {
      const stalls = s.intervalsMbps.filter((x, k) => k < s.intervalsMbps.length - 1 && x < 0.1 * s.mbps).length;
      if (stalls > 0) problems.push(`${what} ${p.key} round ${r}: ${stalls} interval(s) below 10% of the mean (${s.intervalsMbps.join(', ')} Mbit/s)`);
    };
    const tcpLine = (s: TcpSample) => `${s.mbps.toFixed(1).padStart(8)} Mbit/s  retr ${s.retransmits ?? '-'}`;

    // --- 1: TCP, one stream, every path
    await runRounds(
      'tcp',
      paths,
      results as Map<string, Series<TcpSample>>,
      (p) => iperfTcp(p.lab, p.client, p.server, p.addr, p.port, opt.seconds, { cpuPids: p.pids() }),
      tcpLine,
      stallCheck('tcp'),
    );

    // --- 2: TCP, four streams
    if (opt.p4) {
      await runRounds(
        'tcp-p4',
        refPaths,
        p4,
        (p) => iperfTcp(p.lab, p.client, p.server, p.addr, p.port, opt.seconds, { parallel: 4, cpuPids: p.pids() }),
        tcpLine,
        stallCheck('tcp-p4'),
      );
    }

    // --- 3: UDP at a fixed offered rate
    if (opt.udp) {
      await runRounds(
        'udp-500m',
        refPaths,
        udp,
        (p) => iperfUdp(p.lab, p.client, p.server, p.addr, p.port, opt.seconds, { bitrate: UDP_RATE, length: UDP_LEN, window: UDP_WINDOW, cpuPids: p.pids() }),
        (s) => `${s.rxMbps.toFixed(1).padStart(8)} Mbit/s received  loss ${s.lossPct.toFixed(2)}% (${s.lostPackets ?? '-'}/${s.packets ?? '-'})  sent ${s.txMbps?.toFixed(1) ?? '-'}`,
      );
    }

    // --- 4: CPU at a paced 1 Gbit/s TCP load, and the ping RTT under it (after 1.5 s of load,
    // every 50 ms until ~1 s before the end): what wake-up moderation costs in latency
    if (opt.at1g) {
      const pings = Math.max(5, Math.floor((opt.seconds - 2.5) * 20));
      await runRounds(
        'tcp-1g',
        paths.filter((p) => AT1G_KEYS.includes(p.key)),
        at1g,
        async (p): Promise<LoadedSample> => {
          const [s, rtt] = await Promise.all([
            iperfTcp(p.lab, p.client, p.server, p.addr, p.port, opt.seconds, { bitrate: PACED_RATE, cpuPids: p.pids() }),
            new Promise((r) => setTimeout(r, 1500)).then(() => pingRtt(p.lab, p.client, p.addr, pings, 0.05)).catch(() => null),
          ]);
          return { ...s, rttLoadedUs: rtt?.medianUs ?? null };
        },
        (s) => `${tcpLine(s)}  ping under load ${s.rttLoadedUs ?? '-'} µs`,
      );
    }

    // --- RTT (no other traffic running)
    const rttTargets: Array<[string, Lab, string, string, boolean]> = [
      ['kernel', lab, 'a1', fvrB, kernelOk],
      ['openvpn', lab, 'a1', '10.254.0.1', vpn !== null],
      ['tinc', lab, 'a1', '10.253.0.1', tinc !== null],
      ...variants.map(({ key }): [string, Lab, string, string, boolean] => [key, labOf(key), 'a1', labOf(key).addr('b1'), modeUp.get(key) === true]),
      ...ROUTE_LEGS.map(([key, vm, site]): [string, Lab, string, string, boolean] => [key, lab, vm, lab.publicAddr(site, 'fvr'), kernelOk]),
      [DIRECT_LEG, lab, 'a1', lab.publicAddr('b', 'rt'), kernelOk],
    ];
    // RTT_PINGS per path per round, the paths alternating; the median over all pings (a
    // single series of 20 moved by ±50 µs between runs)
    const rttTimes = new Map<string, number[]>();
    for (let round = 1; round <= opt.rounds; round++) {
      for (const [key, l, from, to, up] of rttTargets) {
        if (!up || errors.some((e) => e.startsWith(`rtt ${key}`))) continue;
        try {
          await l.ping(from, to, { count: 2, interval: 0.05, waitS: 1 }); // warm (ARP, NAT entry)
          const rtt = await pingRtt(l, from, to, RTT_PINGS, 0.05);
          rttTimes.set(key, [...(rttTimes.get(key) ?? []), ...rtt.timesUs]);
          if (rtt.received < rtt.transmitted) problems.push(`ping ${key}: ${rtt.transmitted - rtt.received}/${rtt.transmitted} lost`);
          console.error(`bench: rtt round ${round} ${key.padEnd(15)} ${rtt.medianUs} µs (${rtt.received}/${rtt.transmitted})`);
        } catch (e) {
          fail(`rtt ${key}`, e);
        }
      }
    }
    for (const [key, times] of rttTimes) {
      const m = medianOf(times);
      const r = results.get(key);
      if (r) r.rttUs = m === null ? null : Math.round(m);
      else if (m !== null) legRtt.set(key, Math.round(m));
    }

    // --- overlay datapath counters (drops, send errors) after all the traffic
    for (const [key, { ov }] of modeLabs) {
      if (!ov) continue;
      const mode = key;
      const tag = key === 'overlay' ? '' : `_${key.replace(/^overlay-/, '').replace(/-/g, '_')}`;
      for (const site of ['a', 'b']) {
        try {
          const st = await ov.fullvrStatus(site);
          extra[`fullvr_${site}${tag}_status`] = { engine: st.engine, drops: st.drops, counters: st.counters };
        } catch (e) {
          problems.push(`FullVR ${site} (${mode}) status not readable: ${(e as Error).message.split('\n')[0]}`);
        }
      }
      for (const f of ov.fullvrs.values()) {
        const errLines = (f.proc?.log() ?? '').split('\n').filter((l) => /error|warn|exception/i.test(l));
        if (errLines.length > 0) problems.push(`FullVR ${f.site} (${mode}) log: ${errLines.length} error/warn line(s), first: ${errLines[0]!.slice(0, 200)}`);
      }
      for (const [vm, h] of ov.tinyvrs) {
        const errLines = h.log().split('\n').filter((l) => /error|warn|exception/i.test(l));
        if (errLines.length > 0) problems.push(`TinyVR ${vm} (${mode}) log: ${errLines.length} error/warn line(s), first: ${errLines[0]!.slice(0, 200)}`);
      }
    }
    for (const [name, t] of [['tinc client', tinc?.client], ['tinc server', tinc?.server]] as const) {
      const errLines = (t?.log() ?? '').split('\n').filter((l) => /error|warn|unknown source|dropping/i.test(l));
      if (errLines.length > 0) problems.push(`${name} log: ${errLines.length} error/warn line(s), first: ${errLines[0]!.slice(0, 200)}`);
    }
  } finally {
    await tinc?.stop().catch((e) => problems.push(`tinc stop: ${(e as Error).message}`));
    await vpn?.stop().catch((e) => problems.push(`openvpn stop: ${(e as Error).message}`));
    for (const [mode, { ov }] of modeLabs) await ov?.stop().catch((e) => problems.push(`overlay ${mode} stop: ${(e as Error).message}`));
    for (const l of new Set([lab, ...[...modeLabs.values()].map((m) => m.lab)])) {
      try {
        await l.cleanup();
      } catch (e) {
        errors.push(`lab ${l.prefix} cleanup: ${(e as Error).message.split('\n')[0]}`);
      }
    }
    removeTempDirs();
  }

  // ---------------------------------------------------------------------------
  // report
  // ---------------------------------------------------------------------------
  const medTcp = (m: Map<string, Series<TcpSample>>, key: string): number | null => medianOf(m.get(key)?.samples.map((s) => s.mbps) ?? []);
  const med = (key: string) => medTcp(results as Map<string, Series<TcpSample>>, key);
  const modeKey = (mode: Mode) => (mode === MODES[0] ? 'overlay' : `overlay-${mode}`);

  const checkComplete = (what: string, m: Map<string, Series<unknown>>) => {
    for (const [key, r] of m) {
      if (r.samples.length < opt.rounds) {
        const tag = what ? `${what} ${key}` : key;
        const why = r.errors[0] ?? 'no samples';
        if (!errors.some((e) => e.startsWith(tag) || e.startsWith(`${what || 'tcp'} ${key}`) || e.startsWith(`${key}:`))) errors.push(`${tag}: ${r.samples.length}/${opt.rounds} samples (${why})`);
      }
    }
  };
  checkComplete('', results as Map<string, Series<unknown>>);
  checkComplete('tcp-p4', p4 as Map<string, Series<unknown>>);
  checkComplete('udp-500m', udp as Map<string, Series<unknown>>);
  checkComplete('tcp-1g', at1g as Map<string, Series<unknown>>);
  for (const key of ['overlay', 'kernel']) {
    if (results.get(key)?.rttUs == null && !errors.some((e) => e.startsWith(`rtt ${key}`))) errors.push(`rtt ${key}: not measured`);
  }

  const lines: string[] = [];
  const samplesStr = (xs: number[]) => xs.map((x) => x.toFixed(1)).join(' / ') || '-';
  const retrStr = (ss: TcpSample[]) => ss.map((s) => s.retransmits ?? '-').join('/') || '-';

  // 1: TCP 1 stream + RTT
  lines.push(`TCP, 1 stream: iperf3 -P 1 -t ${opt.seconds}, receiver-side Mbit/s, median of ${opt.rounds} alternating rounds; RTT: ping -c ${RTT_PINGS} -i 0.05 per round, alternating, median of all pings`);
  lines.push('');
  lines.push(
    ...table(
      ['path', 'Mbit/s', 'samples (Mbit/s)', 'retr', 'RTT µs'],
      [...results.values()].map((r) => [
        r.key,
        med(r.key)?.toFixed(1) ?? 'FAILED',
        samplesStr(r.samples.map((s) => s.mbps)),
        retrStr(r.samples),
        r.rttUs === null ? '-' : String(r.rttUs),
      ]),
      [1, 4],
    ),
  );
  lines.push('');
  for (const r of results.values()) lines.push(`  ${r.key.padEnd(20)} ${r.label}`);

  // 2: TCP 4 streams
  if (opt.p4) {
    lines.push('');
    lines.push(`TCP, 4 streams: iperf3 -P 4 -t ${opt.seconds}, receiver-side Mbit/s (sum), median of ${opt.rounds} alternating rounds`);
    lines.push('');
    lines.push(
      ...table(
        ['path', 'Mbit/s', 'samples (Mbit/s)', 'retr'],
        [...p4.values()].map((r) => [r.key, medTcp(p4, r.key)?.toFixed(1) ?? 'FAILED', samplesStr(r.samples.map((s) => s.mbps)), retrStr(r.samples)]),
        [1],
      ),
    );
  }

  // 3: UDP at 500 Mbit/s
  if (opt.udp) {
    lines.push('');
    lines.push(
      `UDP at a fixed offered rate: iperf3 -u -b ${UDP_RATE} -l ${UDP_LEN} -w ${UDP_WINDOW} -t ${opt.seconds}, receiver side (end.sum_received), median of ${opt.rounds} alternating rounds`,
    );
    lines.push('');
    lines.push(
      ...table(
        ['path', 'rx Mbit/s', 'loss %', 'samples (rx Mbit/s, loss %)'],
        [...udp.values()].map((r) => [
          r.key,
          medianOf(r.samples.map((s) => s.rxMbps))?.toFixed(1) ?? 'FAILED',
          median(r.samples.map((s) => s.lossPct))?.toFixed(2) ?? '-',
          r.samples.map((s) => `${s.rxMbps.toFixed(1)} (${s.lossPct.toFixed(2)}%)`).join(' / ') || '-',
        ]),
        [1, 2],
      ),
    );
  }

  // 4: CPU at a paced 1 Gbit/s
  const at1gOverlay = at1g.get('overlay')?.samples ?? [];
  const maxOf = (s: TcpSample, a: string, b: string): number | null => {
    const xs = [s.cpu[a], s.cpu[b]].filter((x): x is number => typeof x === 'number');
    return xs.length ? Math.max(...xs) : null;
  };
  const cpuAt1g = at1gOverlay.length
    ? {
        tinyvr: medianOf(at1gOverlay.map((s) => maxOf(s, 'tinyvr_a', 'tinyvr_b'))),
        fullvr: medianOf(at1gOverlay.map((s) => maxOf(s, 'fullvr_a', 'fullvr_b'))),
        ...cpuMedianOf(at1gOverlay),
        achieved_mbps: medTcp(at1g, 'overlay'),
        rtt_loaded_us: medianOf(at1gOverlay.map((s) => s.rttLoadedUs)),
        retransmits: at1gOverlay.map((s) => s.retransmits),
        samples_mbps: at1gOverlay.map((s) => round1(s.mbps)),
        cpu_samples: at1gOverlay.map((s) => s.cpu),
      }
    : { tinyvr: null, fullvr: null, achieved_mbps: null };
  const refAt1g = (key: string) => {
    const ss = at1g.get(key)?.samples ?? [];
    if (ss.length === 0) return null;
    return {
      ...cpuMedianOf(ss),
      achieved_mbps: medTcp(at1g, key),
      reached_1g: (medTcp(at1g, key) ?? 0) >= 950,
      rtt_loaded_us: medianOf(ss.map((x) => x.rttLoadedUs)),
      retransmits: ss.map((s) => s.retransmits),
      samples_mbps: ss.map((s) => round1(s.mbps)),
      cpu_samples: ss.map((s) => s.cpu),
    };
  };
  if (opt.at1g) {
    lines.push('');
    lines.push(
      `CPU at a paced ${PACED_RATE}bit/s TCP load: iperf3 -b ${PACED_RATE} -P 1 -t ${opt.seconds}; utime+stime of each process, % of one core; ping: median RTT during the load (-i 0.05); median of ${opt.rounds} alternating rounds`,
    );
    lines.push('');
    const rows: string[][] = [];
    for (const key of AT1G_KEYS) {
      if (!at1g.has(key)) continue;
      const ss = at1g.get(key)?.samples ?? [];
      const c = cpuMedianOf(ss);
      rows.push([
        key,
        medTcp(at1g, key)?.toFixed(1) ?? 'FAILED',
        medianOf(ss.map((x) => x.rttLoadedUs))?.toFixed(0) ?? '-',
        c
          ? Object.entries(c)
              .filter(([k]) => !k.startsWith('machine'))
              .map(([k, v]) => `${k} ${v ?? '-'}`)
              .join('  ')
          : '-',
        c?.machine?.toFixed(1) ?? '-',
        c?.machine_softirq?.toFixed(1) ?? '-',
      ]);
    }
    lines.push(...table(['path', 'achieved Mbit/s', 'ping µs', 'CPU % per process', 'machine %', 'softirq %'], rows, [1, 2, 4, 5]));
    if (at1gOverlay.length) lines.push(`  overlay: tinyvr = max(tinyvr_a, tinyvr_b) = ${cpuAt1g.tinyvr ?? '-'} %, fullvr = max(fullvr_a, fullvr_b) = ${cpuAt1g.fullvr ?? '-'} %`);
  }

  lines.push('');
  lines.push('CPU during the unpaced runs, % of one core (median over rounds; machine = the whole box, anybody\'s processes, 2 cores = 200; machine_softirq = its softirq part):');
  const cpuLine = (what: string, m: Map<string, Series<{ cpu: CpuUsage }>>) => {
    for (const r of m.values()) {
      const c = cpuMedianOf(r.samples);
      if (c && Object.keys(c).length > 0) lines.push(`  ${what.padEnd(9)} ${r.key.padEnd(15)} ${Object.entries(c).map(([k, v]) => `${k} ${v ?? '-'}`).join('   ')}`);
    }
  };
  cpuLine('tcp', results as Map<string, Series<{ cpu: CpuUsage }>>);
  if (opt.p4) cpuLine('tcp-p4', p4 as Map<string, Series<{ cpu: CpuUsage }>>);
  if (opt.udp) cpuLine('udp-500m', udp as Map<string, Series<{ cpu: CpuUsage }>>);

  // targets
  const kernel = med('kernel');
  const overlay = med('overlay');
  const refs = [med('openvpn'), med('tinc')].filter((x): x is number => x !== null);
  const bestRef = refs.length ? Math.max(...refs) : null;
  const rttOverlay = results.get('overlay')?.rttUs ?? null;
  const rttKernel = results.get('kernel')?.rttUs ?? null;
  const rttAdded = rttOverlay !== null && rttKernel !== null ? rttOverlay - rttKernel : null;
  const legs = ROUTE_LEGS.map(([key]) => legRtt.get(key) ?? null);
  const shortcutFloor = rttKernel !== null && !legs.includes(null) ? Math.round((rttKernel + legs.reduce<number>((a, b) => a + (b ?? 0), 0)) / 2) : null;
  const directFloor = legRtt.get(DIRECT_LEG) ?? null;
  const routeFloor = variants[0]?.direct ? directFloor : shortcutFloor;
  const verdict = (ok: boolean | null) => (ok === null ? 'n/a' : ok ? 'MET' : 'MISSED');
  /** A paced path's TinyVR CPU: the median over rounds of the busier TinyVR. */
  const tinyvrAt1g = (key: string): number | null => {
    const samples = at1g.get(key)?.samples ?? [];
    return samples.length ? medianOf(samples.map((x) => maxOf(x, 'tinyvr_a', 'tinyvr_b'))) : null;
  };
  const unmod1g = tinyvrAt1g('overlay-unmoderated');
  const targets = {
    overlay_vs_kernel: {
      target: '>= 0.40',
      value: overlay !== null && kernel ? Math.round((overlay / kernel) * 1000) / 1000 : null,
      met: overlay !== null && kernel ? overlay / kernel >= 0.4 : null,
    },
    overlay_vs_best_reference: {
      target: '>= 8',
      value: overlay !== null && bestRef ? Math.round((overlay / bestRef) * 100) / 100 : null,
      met: overlay !== null && bestRef ? overlay / bestRef >= 8 : null,
    },
    rtt_added_us: { target: '<= 250', value: rttAdded, met: rttAdded === null ? null : rttAdded <= 250 },
    cpu_pct_at_1g_tinyvr: {
      target: '<= 15',
      value: cpuAt1g.tinyvr ?? null,
      met: cpuAt1g.tinyvr == null ? null : cpuAt1g.tinyvr <= 15,
      achieved_mbps: cpuAt1g.achieved_mbps ?? null,
    },
  };
  lines.push('');
  lines.push('Targets (TCP 1 stream, overlay in its default auth mode, gmac):');
  const pct = (x: number | null) => (x === null ? '-' : `${(x * 100).toFixed(1)}%`);
  lines.push(
    `  overlay >= 40% of kernel            overlay ${overlay ?? '-'} / kernel ${kernel ?? '-'} Mbit/s = ${pct(targets.overlay_vs_kernel.value)}   ${verdict(targets.overlay_vs_kernel.met)}`,
  );
  lines.push(
    `  overlay >= 8 x max(openvpn, tinc)   overlay ${overlay ?? '-'} / max(${med('openvpn') ?? '-'}, ${med('tinc') ?? '-'}) Mbit/s = ${targets.overlay_vs_best_reference.value ?? '-'} x   ${verdict(targets.overlay_vs_best_reference.met)}`,
  );
  lines.push(`  rtt_added_us <= 250                 overlay ${rttOverlay ?? '-'} - kernel ${rttKernel ?? '-'} µs = ${rttAdded ?? '-'} µs   ${verdict(targets.rtt_added_us.met)}`);
  if (routeFloor !== null && rttOverlay !== null && rttKernel !== null) {
    const how = variants[0]?.direct ? 'ping a1 -> NAT b\'s public address, the direct route without routers' : 'half the sum of the pings a1/b1 <-> FullVR a/b, no router';
    lines.push(
      `    of which the overlay's route ${routeFloor - rttKernel} µs more than the kernel's (route floor ${routeFloor} µs: ${how}) and the routers' passes ${rttOverlay - routeFloor} µs`,
    );
  }
  const viaFullvr = med('overlay-via-fullvr');
  const rttViaFullvr = results.get('overlay-via-fullvr')?.rttUs ?? null;
  if (viaFullvr !== null || rttViaFullvr !== null) {
    lines.push(
      `  (without direct paths, for reference: overlay-via-fullvr/kernel = ${viaFullvr !== null && kernel ? pct(viaFullvr / kernel) : '-'}, ${viaFullvr !== null && bestRef ? (viaFullvr / bestRef).toFixed(2) : '-'} x max(openvpn, tinc), added RTT ${rttViaFullvr !== null && rttKernel !== null ? rttViaFullvr - rttKernel : '-'} µs${shortcutFloor !== null && rttViaFullvr !== null && rttKernel !== null ? ` (route ${shortcutFloor - rttKernel} + routers ${rttViaFullvr - shortcutFloor})` : ''}, TinyVR at 1 Gbit/s ${tinyvrAt1g('overlay-via-fullvr') ?? '-'} %)`,
    );
  }
  lines.push(
    `  cpu_pct_at_1g.tinyvr <= 15          ${cpuAt1g.tinyvr ?? '-'} % (at ${cpuAt1g.achieved_mbps ?? '-'} Mbit/s achieved, wake-up moderation ${opt.moderation === undefined ? 'default' : `${opt.moderation} µs`}${unmod1g ? `; unmoderated ${unmod1g} %` : ''})   ${verdict(targets.cpu_pct_at_1g_tinyvr.met)}`,
  );
  const viaHome = med('overlay-via-home');
  const rttViaHome = results.get('overlay-via-home')?.rttUs ?? null;
  if (viaHome !== null || rttViaHome !== null) {
    lines.push(
      `  (without shortcuts, for reference: overlay-via-home/kernel = ${viaHome !== null && kernel ? pct(viaHome / kernel) : '-'}, ${viaHome !== null && bestRef ? (viaHome / bestRef).toFixed(2) : '-'} x max(openvpn, tinc), added RTT ${rttViaHome !== null && rttKernel !== null ? rttViaHome - rttKernel : '-'} µs)`,
    );
  }
  const loopWait = med('overlay-loop-wait');
  const rttLoopWait = results.get('overlay-loop-wait')?.rttUs ?? null;
  if (loopWait !== null || rttLoopWait !== null) {
    const cpu = tinyvrAt1g('overlay-loop-wait');
    lines.push(
      `  (native waiting off, for reference: overlay-loop-wait/kernel = ${loopWait !== null && kernel ? pct(loopWait / kernel) : '-'}, added RTT ${rttLoopWait !== null && rttKernel !== null ? rttLoopWait - rttKernel : '-'} µs, TinyVR at 1 Gbit/s ${cpu ?? '-'} %)`,
    );
  }
  const ghashOpenssl = med('overlay-ghash-openssl');
  if (ghashOpenssl !== null) {
    lines.push(
      `  (gmac with OpenSSL's GHASH, for reference: overlay-ghash-openssl/kernel = ${kernel ? pct(ghashOpenssl / kernel) : '-'}, ${bestRef ? (ghashOpenssl / bestRef).toFixed(2) : '-'} x max(openvpn, tinc), TinyVR at 1 Gbit/s ${tinyvrAt1g('overlay-ghash-openssl') ?? '-'} %)`,
    );
  }
  if (opt.p4) {
    const k4 = medTcp(p4, 'kernel');
    const o4 = medTcp(p4, 'overlay');
    const r4 = [medTcp(p4, 'openvpn'), medTcp(p4, 'tinc')].filter((x): x is number => x !== null);
    lines.push(
      `  (4 streams, for reference: overlay/kernel = ${o4 !== null && k4 ? pct(o4 / k4) : '-'}, overlay/max(openvpn, tinc) = ${o4 !== null && r4.length ? (o4 / Math.max(...r4)).toFixed(2) : '-'} x)`,
    );
  }

  const samplesOf = (key: string) => results.get(key)?.samples.map((s) => round1(s.mbps)) ?? [];
  const allSeries = (m: Map<string, Series<TcpSample>>) => ({
    mbps: Object.fromEntries([...m.keys()].map((k) => [k, medTcp(m, k)])),
    samples: Object.fromEntries([...m.values()].map((r) => [r.key, r.samples.map((s) => round1(s.mbps))])),
  });
  const p4s = allSeries(p4);
  const json = {
    iperf3: sh('iperf3', ['--version']).split('\n')[0] ?? '',
    openvpn: sh('openvpn', ['--version']).split('\n')[0] ?? '',
    tinc: sh('tincd', ['--version']).split('\n')[0] ?? '',
    rounds: opt.rounds,
    tcp_mbps: { overlay: med('overlay'), kernel: med('kernel'), openvpn: med('openvpn'), tinc: med('tinc') },
    tcp_mbps_p4: opt.p4 ? { kernel: p4s.mbps.kernel ?? null, openvpn: p4s.mbps.openvpn ?? null, tinc: p4s.mbps.tinc ?? null, overlay: p4s.mbps.overlay ?? null } : null,
    udp_500m: opt.udp
      ? Object.fromEntries(
          [...udp.values()].map((r) => [
            r.key,
            {
              rx_mbps: medianOf(r.samples.map((s) => s.rxMbps)),
              loss_pct: r.samples.length ? Math.round(median(r.samples.map((s) => s.lossPct))! * 1000) / 1000 : null,
              tx_mbps: medianOf(r.samples.map((s) => s.txMbps)),
              samples: r.samples.map((s) => ({ rx_mbps: round1(s.rxMbps), loss_pct: Math.round(s.lossPct * 1000) / 1000, lost: s.lostPackets, packets: s.packets, jitter_ms: s.jitterMs })),
              sndbuf_actual: r.samples[0]?.sndbufActual ?? null,
              rcvbuf_actual: r.samples[0]?.rcvbufActual ?? null,
              server_rcvbuf_actual: r.samples[0]?.serverRcvbufActual ?? null,
            },
          ]),
        )
      : null,
    udp_settings: { bitrate: UDP_RATE, length: UDP_LEN, window: UDP_WINDOW },
    cpu_pct_at_1g: opt.at1g ? cpuAt1g : null,
    cpu_pct_at_1g_openvpn: opt.at1g ? refAt1g('openvpn') : null,
    cpu_pct_at_1g_tinc: opt.at1g ? refAt1g('tinc') : null,
    cpu_pct_at_1g_unmoderated: opt.at1g ? refAt1g('overlay-unmoderated') : null,
    cpu_pct_at_1g_via_fullvr: opt.at1g ? refAt1g('overlay-via-fullvr') : null,
    cpu_pct_at_1g_via_home: opt.at1g ? refAt1g('overlay-via-home') : null,
    cpu_pct_at_1g_loop_wait: opt.at1g ? refAt1g('overlay-loop-wait') : null,
    cpu_pct_at_1g_ghash_openssl: opt.at1g ? refAt1g('overlay-ghash-openssl') : null,
    moderation_us: opt.moderation ?? 'default',
    rtt_loaded_us: opt.at1g ? Object.fromEntries(AT1G_KEYS.filter((k) => at1g.has(k)).map((k) => [k.replace(/-/g, '_'), medianOf((at1g.get(k)?.samples ?? []).map((x) => x.rttLoadedUs))])) : null,
    rtt_us: {
      overlay: rttOverlay,
      kernel: rttKernel,
      openvpn: results.get('openvpn')?.rttUs ?? null,
      tinc: results.get('tinc')?.rttUs ?? null,
      overlay_unmoderated: results.get('overlay-unmoderated')?.rttUs ?? null,
      overlay_via_fullvr: results.get('overlay-via-fullvr')?.rttUs ?? null,
      overlay_via_home: results.get('overlay-via-home')?.rttUs ?? null,
      overlay_loop_wait: results.get('overlay-loop-wait')?.rttUs ?? null,
      overlay_ghash_openssl: results.get('overlay-ghash-openssl')?.rttUs ?? null,
      route_floor: routeFloor,
      route_floor_shortcut: shortcutFloor,
      legs: Object.fromEntries([...ROUTE_LEGS.map(([key]) => key), DIRECT_LEG].map((key) => [key, legRtt.get(key) ?? null])),
    },
    rtt_added_us: rttAdded,
    targets,
    tunnel_mtu: mtus,
    tcp_samples_mbps: { overlay: samplesOf('overlay'), kernel: samplesOf('kernel'), openvpn: samplesOf('openvpn'), tinc: samplesOf('tinc') },
    tcp_samples_p4: opt.p4 ? p4s.samples : null,
    tcp_mbps_unmoderated: med('overlay-unmoderated'),
    tcp_mbps_via_fullvr: med('overlay-via-fullvr'),
    tcp_mbps_via_home: med('overlay-via-home'),
    tcp_mbps_loop_wait: med('overlay-loop-wait'),
    tcp_mbps_ghash_openssl: med('overlay-ghash-openssl'),
    tcp_mbps_modes: Object.fromEntries(opt.modes.map((m) => [m, med(modeKey(m))])),
    tcp_samples_modes: Object.fromEntries(opt.modes.map((m) => [m, samplesOf(modeKey(m))])),
    rtt_us_modes: Object.fromEntries(opt.modes.map((m) => [m, results.get(modeKey(m))?.rttUs ?? null])),
    retransmits: Object.fromEntries([...results.values()].map((r) => [r.key, r.samples.map((s) => s.retransmits)])),
    retransmits_p4: Object.fromEntries([...p4.values()].map((r) => [r.key, r.samples.map((s) => s.retransmits)])),
    intervals_mbps: Object.fromEntries([...results.values()].map((r) => [r.key, r.samples.map((s) => s.intervalsMbps)])),
    cpu_pct: cpuMedianOf(results.get('overlay')?.samples ?? []),
    cpu_pct_modes: Object.fromEntries(opt.modes.map((m) => [m, cpuMedianOf(results.get(modeKey(m))?.samples ?? [])])),
    cpu_pct_openvpn: cpuMedianOf(results.get('openvpn')?.samples ?? []),
    cpu_pct_tinc: cpuMedianOf(results.get('tinc')?.samples ?? []),
    cpu_pct_kernel: cpuMedianOf(results.get('kernel')?.samples ?? []),
    cpu_pct_p4: Object.fromEntries([...p4.values()].map((r) => [r.key, cpuMedianOf(r.samples)])),
    cpu_pct_udp_500m: Object.fromEntries([...udp.values()].map((r) => [r.key, cpuMedianOf(r.samples)])),
    cpu_samples: Object.fromEntries([...results.values()].filter((r) => r.samples.length).map((r) => [r.key, r.samples.map((s) => s.cpu)])),
    paths: Object.fromEntries([...results.values()].map((r) => [r.key, r.label])),
    ...extra,
  };
  return { lines, json };
}

// ---------------------------------------------------------------------------
// main
// ---------------------------------------------------------------------------

async function main(): Promise<number> {
  const opt = parseCli();
  const cli = findCli();
  const startedAt = new Date();
  const loadStart = sh('cat', ['/proc/loadavg']);
  // Before any lab exists, while the machine is as quiet as it gets.
  const machine = measureMachineProfile();
  console.error(`bench: ${formatMachineProfile(machine)}`);

  // Bound the whole run: setup, every sample, RTTs, the join part and teardown.
  const nSamples = 3 + variantsOf(opt).length + (opt.p4 ? 4 : 0) + (opt.udp ? 4 : 0) + (opt.at1g ? 4 : 0);
  const tcpLimitMs = opt.only === 'join' ? 0 : 300_000 + opt.rounds * nSamples * (opt.seconds + 30) * 1000;
  const joinLimitMs = opt.only === 'tcp' ? 0 : 600_000 + opt.seconds * 1000;
  const limitMs = tcpLimitMs + joinLimitMs;
  const watchdog = setTimeout(() => {
    console.error(`bench: time limit of ${Math.round(limitMs / 1000)} s exceeded, aborting`);
    process.exit(124);
  }, limitMs);
  watchdog.unref();

  const hostTx = hostTxModel(opt.plainLab);
  if (opt.only !== 'join') console.error(`bench: ${hostTx.note}`);
  const tcp = opt.only === 'join' ? null : await runTcp(opt, cli, hostTx);
  let join: JoinBenchResult | null = null;
  if (opt.only !== 'tcp') {
    try {
      join = await runJoinBench({ cli, seconds: opt.seconds, keepLogs: opt.keepLogs, cpuProfDir: opt.joinCpuProf, onTempDir: (d) => tempDirs.add(d) });
      errors.push(...join.errors);
      problems.push(...join.problems);
    } catch (e) {
      fail('join', e);
    } finally {
      removeTempDirs();
    }
  }

  const uname = sh('uname', ['-r']);
  const ghash = ghashImpl();
  const lines: string[] = [];
  lines.push(
    `TinyViNe-TS bench  ${startedAt.toISOString()}  kernel ${uname}  node ${process.version}  ${sh('nproc', [])} CPUs  load at start ${loadStart.split(' ').slice(0, 3).join(' ')}  gmac GHASH ${ghash}`,
  );
  lines.push(formatMachineProfile(machine));
  if (tcp) lines.push(hostTx.note, ...tcp.lines);
  if (join) {
    lines.push('');
    lines.push(...join.lines);
  }
  if (problems.length > 0) {
    lines.push('');
    lines.push('Observations:');
    for (const p of problems) lines.push(`  - ${p}`);
  }
  console.log(lines.join('\n'));

  const json = {
    date: startedAt.toISOString(),
    kernel: uname,
    node: process.version,
    cpus: Number(sh('nproc', [])) || null,
    gmac_ghash: ghash,
    machine_profile: machine,
    lab_host_tx: opt.only === 'join' ? null : hostTx.on,
    loadavg_start: loadStart,
    loadavg_end: sh('cat', ['/proc/loadavg']),
    seconds: opt.seconds,
    parts: opt.only ? [opt.only] : ['tcp', 'join'],
    ...(tcp?.json ?? {}),
    ...(join?.json ?? {}),
    problems,
    errors,
  };
  if (opt.json) {
    writeFileSync(opt.json, JSON.stringify(json, null, 2) + '\n');
    console.log(`\nJSON: ${opt.json}`);
  }
  clearTimeout(watchdog);
  if (errors.length > 0) {
    console.error(`bench: FAILED: ${errors.join('; ')}`);
    return 1;
  }
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    console.error(`bench: FAILED: ${firstLine(e)}`);
    process.exitCode = 1;
  },
);
