// TinyViNe-TS benchmark (not a test):
//  - tcp: TCP throughput and RTT from VM a1 to VM b1 across two NATed cloud sites, over the
//    overlay (every auth mode), plain kernel forwarding and OpenVPN, in one namespace lab;
//  - join (join-bench.ts): GET /join requests/s and latency of the download server, and the
//    time from `curl ... /join | sh` to the first packet across the overlay.
//
//   npm run bench -- [--only tcp|join] [--json FILE] [--seconds N] [--rounds N] [--no-modes] [--keep-logs]
//
// TCP paths are measured alternately (kernel, openvpn, overlay, overlay modes, kernel, ...)
// and each reports the median of its rounds. Exits non-zero with a one-line message if
// any measurement failed (after printing what was measured). Everything (namespaces,
// processes, temp files) is removed on success, failure and SIGINT/SIGTERM/SIGHUP.
import { rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { createLab, labSupport, type Lab } from '../lab/topology.js';
import { waitFor, type NetworkSpec } from '../lab/overlay-harness.js';
import { BenchOverlay, findCli } from './bench-overlay.js';
import { startOpenvpn, type OpenvpnTunnel } from './openvpn.js';
import { cpuSampler, iperfTcp, median, pingRtt, round1, type TcpSample } from './measure.js';
import { runJoinBench, type JoinBenchResult } from './join-bench.js';

const USAGE = `Usage: node dist/bench.mjs [--only tcp|join] [--json FILE] [--seconds N] [--rounds N] [--no-modes] [--keep-logs] [--join-cpu-prof DIR]
  --only WHAT   run only the TCP/RTT part (tcp) or only the join part (join); default both
  --json FILE   also write the results as JSON to FILE
  --seconds N   iperf3 duration per TCP sample, and GET /join load duration (default 10)
  --rounds N    rounds of alternating samples per path; the median is reported (default 3)
  --no-modes    measure the overlay with auth hmac only (skip aes-gcm, chacha, none)
  --keep-logs   keep the lab logs dir (FullVR/TinyVR/OpenVPN/server logs) after the run
  --join-cpu-prof DIR   run the GET /join load-test server with node --cpu-prof, profile into DIR`;

type Mode = 'hmac' | 'aes-gcm' | 'chacha' | 'none';
const MODES: Mode[] = ['hmac', 'aes-gcm', 'chacha', 'none'];

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
        'keep-logs': { type: 'boolean' },
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
    modes: v['no-modes'] ? (['hmac'] as Mode[]) : MODES,
    keepLogs: v['keep-logs'] === true,
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

interface PathResult {
  key: string;
  label: string;
  samples: TcpSample[];
  cpu: Array<Record<string, number | null>>;
  errors: string[];
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

// ---------------------------------------------------------------------------
// tcp: throughput and RTT over the overlay, kernel forwarding and OpenVPN
// ---------------------------------------------------------------------------

type Options = ReturnType<typeof parseCli>;

/** Table lines (after the common header) and JSON fields of the TCP part; null if it cannot run. */
async function runTcp(opt: Options, cli: string): Promise<{ lines: string[]; json: Record<string, unknown> } | null> {
  const support = await labSupport(['ip', 'nft', 'ping', 'iperf3', 'curl', 'openvpn']);
  if (!support.ok) {
    console.error(`bench: tcp: cannot run: ${support.reason}`);
    errors.push(`tcp: cannot run: ${support.reason}`);
    return null;
  }

  const vmsA = opt.modes.map((_, i) => `a${i + 1}`);
  const vmsB = opt.modes.map((_, i) => `b${i + 1}`);
  const lab: Lab = await createLab({
    sites: [
      { name: 'a', kind: 'cloud', publicPrefix: '198.51.100.0/25', subnet: '10.1.0.0/24', vms: vmsA },
      { name: 'b', kind: 'cloud', publicPrefix: '203.0.113.0/25', subnet: '10.2.0.0/24', vms: vmsB },
    ],
    keepLogs: opt.keepLogs,
  });
  let ov: BenchOverlay | null = null;
  let vpn: OpenvpnTunnel | null = null;
  const fvrB = lab.publicAddr('b', 'fvr');
  const results = new Map<string, PathResult>();
  const extra: Record<string, unknown> = {};
  const modeUp = new Map<Mode, boolean>();

  try {
    console.error(`bench: lab ${lab.prefix} built in ${Math.round(lab.buildMs)} ms; logs in ${lab.logsDir}`);

    // --- overlay: one network per auth mode, mode i between VMs a<i+1> and b<i+1> (hmac: a1 -> b1)
    const networks: NetworkSpec[] = opt.modes.map((mode, i) => ({
      id: i + 1,
      name: `bench-${mode}`,
      mode: 'physical',
      auth: mode,
      sites: [
        { site: 'a', subnet: '10.1.0.0/24' },
        { site: 'b', subnet: '10.2.0.0/24' },
      ],
      token: `bench-${mode}-token-0123456789abcdef`,
    }));
    try {
      ov = new BenchOverlay(lab, networks, ['a', 'b'], cli);
      tempDirs.add(ov.dir);
      await ov.startAllFullvrs();
      await waitFor(async () => (await ov!.fullvrStatus('a')).peers.every((p: any) => p.session > 0), 15_000);
      const joins = await Promise.allSettled(
        opt.modes.flatMap((mode, i) => [ov!.startTinyvr(vmsA[i]!, 'a', i + 1), ov!.startTinyvr(vmsB[i]!, 'b', i + 1)]),
      );
      for (const [i, mode] of opt.modes.entries()) {
        const bad = [joins[2 * i]!, joins[2 * i + 1]!].find((j) => j.status === 'rejected') as PromiseRejectedResult | undefined;
        if (bad) {
          fail(`overlay ${mode}: TinyVR start`, bad.reason);
          continue;
        }
        const p = await lab.ping(vmsA[i]!, lab.addr(vmsB[i]!), { count: 3, interval: 0.2, waitS: 2 });
        if (p.received === 0) fail(`overlay ${mode}: connectivity ${vmsA[i]} -> ${vmsB[i]}`, new Error(`no ping reply\n${p.output}`));
        else modeUp.set(mode, true);
      }
    } catch (e) {
      fail('overlay: start', e);
    }

    // --- openvpn: server in b-fvr on its public address, client in a1 (through NAT a)
    try {
      vpn = await startOpenvpn(lab, { serverNode: 'b-fvr', serverAddr: fvrB, clientNode: 'a1', onDir: (d) => tempDirs.add(d) });
      const p = await lab.ping('a1', vpn.serverTunAddr, { count: 3, interval: 0.2, waitS: 2 });
      if (p.received === 0) throw new Error(`tunnel up but no ping reply over it\n${p.output}`);
    } catch (e) {
      fail('openvpn: start', e);
      await vpn?.stop().catch(() => undefined);
      vpn = null;
    }

    // --- kernel reference: a1 -> FullVR b's public address (a1 -> NAT router a -> inet -> b-fvr)
    let kernelOk = true;
    {
      const p = await lab.ping('a1', fvrB, { count: 3, interval: 0.2, waitS: 2 });
      if (p.received === 0) {
        kernelOk = false;
        fail('kernel: connectivity a1 -> ' + fvrB, new Error(p.output));
      }
    }

    // --- path table, in measuring order
    interface Path {
      key: string;
      label: string;
      client: string;
      server: string;
      addr: string;
      port: number;
      up: boolean;
      pids: () => Record<string, number | undefined>;
    }
    const paths: Path[] = [
      {
        key: 'kernel',
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
        label: `openvpn: a1 → 10.254.0.1 in b-fvr (OpenVPN 2.6 p2p UDP, no crypto, tun-mtu 1420, via NAT a)`,
        client: 'a1',
        server: 'b-fvr',
        addr: '10.254.0.1',
        port: 5202,
        up: vpn !== null,
        pids: () => ({ client: vpn?.client.pid, server: vpn?.server.pid }),
      },
      ...opt.modes.map(
        (mode, i): Path => ({
          key: i === 0 ? 'overlay' : `overlay-${mode}`,
          label: `overlay${i === 0 ? '' : ` ${mode}`}: ${vmsA[i]} → ${vmsB[i]} (TinyVR → FullVR a → FullVR b → TinyVR, auth ${mode})`,
          client: vmsA[i]!,
          server: vmsB[i]!,
          addr: lab.addr(vmsB[i]!),
          port: 5203 + i,
          up: modeUp.get(mode) === true,
          pids: () => ({
            tinyvr_a: ov?.tinyvrs.get(vmsA[i]!)?.pid,
            fullvr_a: ov?.fullvrs.get('a')?.proc?.pid,
            fullvr_b: ov?.fullvrs.get('b')?.proc?.pid,
            tinyvr_b: ov?.tinyvrs.get(vmsB[i]!)?.pid,
          }),
        }),
      ),
    ];
    for (const p of paths) results.set(p.key, { key: p.key, label: p.label, samples: [], cpu: [], errors: [], rttUs: null });

    // --- TCP rounds, alternating paths
    for (let r = 1; r <= opt.rounds; r++) {
      for (const p of paths) {
        const res = results.get(p.key)!;
        if (!p.up) {
          res.errors.push('not up');
          continue;
        }
        const cpu = cpuSampler(p.pids());
        try {
          const s = await iperfTcp(lab, p.client, p.server, p.addr, p.port, opt.seconds);
          const c = cpu.stop();
          res.samples.push(s);
          res.cpu.push(c);
          const mean = s.mbps;
          const stalls = s.intervalsMbps.filter((x, k) => k < s.intervalsMbps.length - 1 && x < 0.1 * mean).length;
          if (stalls > 0) problems.push(`${p.key} round ${r}: ${stalls} interval(s) below 10% of the mean (${s.intervalsMbps.join(', ')} Mbit/s)`);
          console.error(
            `bench: round ${r} ${p.key.padEnd(15)} ${s.mbps.toFixed(1).padStart(8)} Mbit/s  retr ${s.retransmits ?? '-'}` +
              (Object.keys(c).length ? `  cpu% ${Object.entries(c).map(([k, v]) => `${k}=${v ?? '-'}`).join(' ')}` : ''),
          );
        } catch (e) {
          res.errors.push(`round ${r}: ${(e as Error).message.split('\n')[0]}`);
          fail(`${p.key} round ${r}`, e);
        }
      }
    }

    // --- RTT (no other traffic running)
    const rttTargets: Array<[string, string, string, boolean]> = [
      ['kernel', 'a1', fvrB, kernelOk],
      ['openvpn', 'a1', '10.254.0.1', vpn !== null],
      ...opt.modes.map((mode, i): [string, string, string, boolean] => [i === 0 ? 'overlay' : `overlay-${mode}`, vmsA[i]!, lab.addr(vmsB[i]!), modeUp.get(mode) === true]),
    ];
    for (const [key, from, to, up] of rttTargets) {
      if (!up) continue;
      try {
        await lab.ping(from, to, { count: 2, interval: 0.05, waitS: 1 }); // warm (ARP, NAT entry)
        const rtt = await pingRtt(lab, from, to, 20, 0.05);
        results.get(key)!.rttUs = rtt.medianUs;
        if (rtt.received < rtt.transmitted) problems.push(`ping ${key}: ${rtt.transmitted - rtt.received}/${rtt.transmitted} lost`);
        console.error(`bench: rtt ${key.padEnd(15)} ${rtt.medianUs} µs (${rtt.received}/${rtt.transmitted})`);
      } catch (e) {
        fail(`rtt ${key}`, e);
      }
    }

    // --- overlay datapath counters (drops, send errors) after all the traffic
    if (ov) {
      for (const site of ['a', 'b']) {
        try {
          const st = await ov.fullvrStatus(site);
          extra[`fullvr_${site}_status`] = { engine: st.engine, drops: st.drops, counters: st.counters };
        } catch (e) {
          problems.push(`FullVR ${site} status not readable: ${(e as Error).message.split('\n')[0]}`);
        }
      }
      for (const f of ov.fullvrs.values()) {
        const errLines = (f.proc?.log() ?? '').split('\n').filter((l) => /error|warn|exception/i.test(l));
        if (errLines.length > 0) problems.push(`FullVR ${f.site} log: ${errLines.length} error/warn line(s), first: ${errLines[0]!.slice(0, 200)}`);
      }
      for (const [vm, h] of ov.tinyvrs) {
        const errLines = h.log().split('\n').filter((l) => /error|warn|exception/i.test(l));
        if (errLines.length > 0) problems.push(`TinyVR ${vm} log: ${errLines.length} error/warn line(s), first: ${errLines[0]!.slice(0, 200)}`);
      }
    }
  } finally {
    await vpn?.stop().catch((e) => problems.push(`openvpn stop: ${(e as Error).message}`));
    await ov?.stop().catch((e) => problems.push(`overlay stop: ${(e as Error).message}`));
    try {
      await lab.cleanup();
    } catch (e) {
      errors.push(`lab cleanup: ${(e as Error).message.split('\n')[0]}`);
    }
    removeTempDirs();
  }

  // ---------------------------------------------------------------------------
  // report
  // ---------------------------------------------------------------------------
  const med = (key: string): number | null => {
    const r = results.get(key);
    const m = r ? median(r.samples.map((s) => s.mbps)) : null;
    return m === null ? null : round1(m);
  };
  const cpuMedian = (key: string): Record<string, number | null> | null => {
    const r = results.get(key);
    if (!r || r.cpu.length === 0) return null;
    const out: Record<string, number | null> = {};
    for (const k of Object.keys(r.cpu[0]!)) {
      const vals = r.cpu.map((c) => c[k]).filter((x): x is number => typeof x === 'number');
      const m = median(vals);
      out[k] = m === null ? null : round1(m);
    }
    return out;
  };
  const modeKey = (mode: Mode) => (mode === 'hmac' ? 'overlay' : `overlay-${mode}`);

  for (const [key, r] of results) {
    if (r.samples.length < opt.rounds) {
      const why = r.errors[0] ?? 'no samples';
      if (!errors.some((e) => e.startsWith(key))) errors.push(`${key}: ${r.samples.length}/${opt.rounds} samples (${why})`);
    }
    if (r.rttUs === null && (key === 'overlay' || key === 'kernel') && !errors.some((e) => e.startsWith(`rtt ${key}`))) errors.push(`rtt ${key}: not measured`);
  }

  const lines: string[] = [];
  lines.push(`TCP: iperf3, 1 stream, -t ${opt.seconds}, receiver-side Mbit/s, median of ${opt.rounds} alternating rounds; RTT: ping -c 20 -i 0.05, median`);
  lines.push('');
  const hdr = ['path', 'Mbit/s', 'samples (Mbit/s)', 'retr', 'RTT µs'];
  const rows: string[][] = [];
  for (const r of results.values()) {
    rows.push([
      r.key,
      med(r.key)?.toFixed(1) ?? 'FAILED',
      r.samples.map((s) => s.mbps.toFixed(1)).join(' / ') || '-',
      r.samples.map((s) => s.retransmits ?? '-').join('/') || '-',
      r.rttUs === null ? '-' : String(r.rttUs),
    ]);
  }
  const widths = hdr.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]) => row.map((c, i) => (i === 1 || i === 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ');
  lines.push(fmt(hdr));
  lines.push(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const row of rows) lines.push(fmt(row));
  lines.push('');
  for (const r of results.values()) lines.push(`  ${r.key.padEnd(15)} ${r.label}`);
  lines.push('');
  lines.push('CPU during the TCP runs, % of one core (median over rounds):');
  for (const r of results.values()) {
    const c = cpuMedian(r.key);
    if (c && Object.keys(c).length > 0) lines.push(`  ${r.key.padEnd(15)} ${Object.entries(c).map(([k, v]) => `${k} ${v ?? '-'}`).join('   ')}`);
  }

  const samplesOf = (key: string) => results.get(key)?.samples.map((s) => round1(s.mbps)) ?? [];
  const json = {
    iperf3: sh('iperf3', ['--version']).split('\n')[0] ?? '',
    openvpn: sh('openvpn', ['--version']).split('\n')[0] ?? '',
    rounds: opt.rounds,
    tcp_mbps: { overlay: med('overlay'), kernel: med('kernel'), openvpn: med('openvpn') },
    rtt_us: { overlay: results.get('overlay')?.rttUs ?? null, kernel: results.get('kernel')?.rttUs ?? null, openvpn: results.get('openvpn')?.rttUs ?? null },
    tcp_samples_mbps: { overlay: samplesOf('overlay'), kernel: samplesOf('kernel'), openvpn: samplesOf('openvpn') },
    tcp_mbps_modes: Object.fromEntries(opt.modes.map((m) => [m, med(modeKey(m))])),
    tcp_samples_modes: Object.fromEntries(opt.modes.map((m) => [m, samplesOf(modeKey(m))])),
    rtt_us_modes: Object.fromEntries(opt.modes.map((m) => [m, results.get(modeKey(m))?.rttUs ?? null])),
    retransmits: Object.fromEntries([...results.values()].map((r) => [r.key, r.samples.map((s) => s.retransmits)])),
    intervals_mbps: Object.fromEntries([...results.values()].map((r) => [r.key, r.samples.map((s) => s.intervalsMbps)])),
    cpu_pct: cpuMedian('overlay'),
    cpu_pct_modes: Object.fromEntries(opt.modes.map((m) => [m, cpuMedian(modeKey(m))])),
    cpu_pct_openvpn: cpuMedian('openvpn'),
    cpu_samples: Object.fromEntries([...results.values()].filter((r) => r.cpu.length && Object.keys(r.cpu[0]!).length).map((r) => [r.key, r.cpu])),
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

  // Bound the whole run: setup, every sample, RTTs, the join part and teardown.
  const nPaths = 2 + opt.modes.length;
  const tcpLimitMs = opt.only === 'join' ? 0 : 300_000 + opt.rounds * nPaths * (opt.seconds + 30) * 1000;
  const joinLimitMs = opt.only === 'tcp' ? 0 : 600_000 + opt.seconds * 1000;
  const limitMs = tcpLimitMs + joinLimitMs;
  const watchdog = setTimeout(() => {
    console.error(`bench: time limit of ${Math.round(limitMs / 1000)} s exceeded, aborting`);
    process.exit(124);
  }, limitMs);
  watchdog.unref();

  const tcp = opt.only === 'join' ? null : await runTcp(opt, cli);
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
  const lines: string[] = [];
  lines.push(
    `TinyViNe-TS bench  ${startedAt.toISOString()}  kernel ${uname}  node ${process.version}  ${sh('nproc', [])} CPUs  load at start ${loadStart.split(' ').slice(0, 3).join(' ')}`,
  );
  if (tcp) lines.push(...tcp.lines);
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
    console.error(`bench: FAILED: ${((e as Error)?.message ?? String(e)).split('\n')[0]}`);
    process.exitCode = 1;
  },
);
