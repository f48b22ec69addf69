// Measurement helpers for the benchmark: iperf3 TCP runs, ping RTT, per-process CPU.
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { SpawnHandle } from '../lab/netns.js';
import type { Lab } from '../lab/topology.js';

export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const round1 = (x: number): number => Math.round(x * 10) / 10;

/** The first line of an error's message (or of the thrown value). */
export const firstLine = (e: unknown): string => ((e as Error)?.message ?? String(e)).split('\n')[0] ?? '';

export interface TcpSample {
  /** Receiver-side Mbit/s (end.sum_received.bits_per_second / 1e6). */
  mbps: number;
  /** Sender-side Mbit/s (end.sum_sent.bits_per_second / 1e6). */
  sentMbps: number | null;
  /** Sender-side TCP retransmits, all streams (end.sum_sent.retransmits). */
  retransmits: number | null;
  /** Per-interval (1 s) Mbit/s as the client saw them (all streams), to spot stalls. */
  intervalsMbps: number[];
  seconds: number;
  cpu: CpuUsage;
}

export interface UdpSample {
  /** Receiver-side Mbit/s (end.sum_received.bits_per_second / 1e6; iperf3 3.12's end.sum is the sender). */
  rxMbps: number;
  /** Offered (sender-side) Mbit/s. */
  txMbps: number | null;
  /** Datagrams lost, % (end.sum_received.lost_percent). */
  lossPct: number;
  lostPackets: number | null;
  packets: number | null;
  jitterMs: number | null;
  /** Socket buffers the client reports it got (start.sndbuf_actual / rcvbuf_actual). */
  sndbufActual: number | null;
  rcvbufActual: number | null;
  /** Receive buffer of the server's UDP socket (`ss -m` skmem rb, read a second into the run). */
  serverRcvbufActual: number | null;
  intervalsMbps: number[];
  seconds: number;
  cpu: CpuUsage;
}

export interface IperfOptions {
  /** Parallel streams (-P), default 1. */
  parallel?: number;
  /** Target rate (-b), e.g. '1G' (TCP is paced to it; UDP is sent at it). */
  bitrate?: string;
  /** Socket buffer (-w), e.g. '4M'; iperf3 applies it on both ends (the server gets it from the client). */
  window?: string;
  /** Datagram / write length (-l). */
  length?: number;
  /** Processes whose CPU to sample during the run (besides iperf3's own and the machine's). */
  cpuPids?: Record<string, number | undefined>;
}

/**
 * CPU during a run, % of one core: the given processes, `iperf_client`, `iperf_server`,
 * `machine` (every process on the box, anybody's; 2 busy cores = 200) and `machine_softirq`.
 */
export type CpuUsage = Record<string, number | null>;

/**
 * One iperf3 run (-J) from `clientNode` to a server in `serverNode` bound to `addr` (one
 * test, -1), sampling the CPU of `o.cpuPids`, of both iperf3 processes and of the whole
 * machine while the client runs. Returns the parsed JSON; throws with a readable message when it fails.
 */
async function iperfRun(
  lab: Lab,
  clientNode: string,
  serverNode: string,
  addr: string,
  port: number,
  seconds: number,
  extra: string[],
  cpuPids: Record<string, number | undefined> = {},
  midRun?: () => Promise<void>,
): Promise<{ j: any; cpu: Record<string, number | null> }> {
  const srv = lab.spawn(serverNode, ['iperf3', '-s', '-1', '--forceflush', '-B', addr, '-p', String(port)]);
  let cli: SpawnHandle | null = null;
  try {
    await srv.waitForLog(/Server listening/, 5000);
    // spawned (not exec'd) so that its pid is known and its CPU can be sampled; -J goes to the log
    cli = lab.spawn(clientNode, ['iperf3', '-c', addr, '-p', String(port), '-t', String(seconds), '-J', '--connect-timeout', '5000', ...extra]);
    const cpu = cpuSampler({ ...cpuPids, iperf_client: cli.pid, iperf_server: srv.pid }, 100);
    const machine = machineCpuSampler();
    const mid = midRun ? new Promise((r) => setTimeout(r, Math.min(1000, (seconds * 1000) / 2))).then(midRun).catch(() => undefined) : null;
    const limitMs = (seconds + 25) * 1000;
    let timer: NodeJS.Timeout | undefined;
    const res = await Promise.race([cli.exited, new Promise<'timeout'>((r) => (timer = setTimeout(() => r('timeout'), limitMs)))]);
    clearTimeout(timer);
    const usage = { ...cpu.stop(), ...machine.stop() };
    await mid;
    if (res === 'timeout') throw new Error(`iperf3 ${clientNode} -> ${addr}: client timed out after ${limitMs / 1000} s`);
    const out = cli.log();
    let j: any;
    try {
      j = JSON.parse(out.slice(out.indexOf('{'), out.lastIndexOf('}') + 1));
    } catch {
      throw new Error(`iperf3 ${clientNode} -> ${addr}: no JSON output (exit ${res.code ?? res.signal}): ${out.trim().split('\n')[0] ?? ''}`);
    }
    if (j.error) throw new Error(`iperf3 ${clientNode} -> ${addr}: ${j.error}`);
    return { j, cpu: usage };
  } finally {
    await cli?.kill('SIGTERM', 2000);
    await srv.kill('SIGTERM', 2000);
  }
}

function commonArgs(o: IperfOptions): string[] {
  const a = ['-P', String(o.parallel ?? 1)];
  if (o.bitrate !== undefined) a.push('-b', o.bitrate);
  if (o.window !== undefined) a.push('-w', o.window);
  if (o.length !== undefined) a.push('-l', String(o.length));
  return a;
}

const num = (x: unknown): number | null => (typeof x === 'number' && Number.isFinite(x) ? x : null);

/** One iperf3 TCP test (default one stream, unpaced); receiver-side throughput. */
export async function iperfTcp(lab: Lab, clientNode: string, serverNode: string, addr: string, port: number, seconds: number, o: IperfOptions = {}): Promise<TcpSample> {
  const { j, cpu } = await iperfRun(lab, clientNode, serverNode, addr, port, seconds, commonArgs(o), o.cpuPids);
  const bps = j?.end?.sum_received?.bits_per_second;
  if (typeof bps !== 'number' || !(bps > 0)) throw new Error(`iperf3 ${clientNode} -> ${addr}: no receiver-side throughput in the result`);
  const intervals: number[] = (j.intervals ?? []).map((iv: any) => round1((iv?.sum?.bits_per_second ?? 0) / 1e6));
  const sent = num(j.end.sum_sent?.bits_per_second);
  return {
    mbps: bps / 1e6,
    sentMbps: sent === null ? null : sent / 1e6,
    retransmits: num(j.end.sum_sent?.retransmits),
    intervalsMbps: intervals,
    seconds: j.end.sum_received.seconds ?? seconds,
    cpu,
  };
}

/** One iperf3 UDP test at a fixed offered rate; receiver-side rate and loss. */
export async function iperfUdp(lab: Lab, clientNode: string, serverNode: string, addr: string, port: number, seconds: number, o: IperfOptions = {}): Promise<UdpSample> {
  // The server applies the client's -w to its own socket; see what it got (ss: skmem rb) mid-run.
  let serverRcvbuf: number | null = null;
  const probe = async () => {
    const r = await lab.exec(serverNode, ['ss', '-uamnH', 'src', `${addr}:${port}`], { check: false, timeoutMs: 5000 });
    const m = /skmem:\(r\d+,rb(\d+)/.exec(r.stdout);
    if (m) serverRcvbuf = Number(m[1]);
  };
  const { j, cpu } = await iperfRun(lab, clientNode, serverNode, addr, port, seconds, ['-u', ...commonArgs(o)], o.cpuPids, probe);
  // iperf3 3.12: end.sum is the sender's view; end.sum_received is what the server got
  const rx = j?.end?.sum_received;
  const bps = num(rx?.bits_per_second);
  if (bps === null) throw new Error(`iperf3 -u ${clientNode} -> ${addr}: no end.sum_received in the result`);
  const lost = num(rx.lost_packets);
  const packets = num(rx.packets);
  const lossPct = num(rx.lost_percent) ?? (lost !== null && packets ? (100 * lost) / packets : null);
  if (lossPct === null) throw new Error(`iperf3 -u ${clientNode} -> ${addr}: no loss figures in end.sum_received`);
  const tx = num(j.end.sum_sent?.bits_per_second) ?? num(j.end.sum?.bits_per_second);
  return {
    rxMbps: bps / 1e6,
    txMbps: tx === null ? null : tx / 1e6,
    lossPct,
    lostPackets: lost,
    packets,
    jitterMs: num(rx.jitter_ms),
    sndbufActual: num(j.start?.sndbuf_actual),
    rcvbufActual: num(j.start?.rcvbuf_actual),
    serverRcvbufActual: serverRcvbuf,
    intervalsMbps: (j.intervals ?? []).map((iv: any) => round1((iv?.sum?.bits_per_second ?? 0) / 1e6)),
    seconds: num(rx.seconds) ?? seconds,
    cpu,
  };
}

export interface RttResult {
  /** Median of the per-packet `time=` values, in µs. */
  medianUs: number;
  /** The per-packet times, in µs. */
  timesUs: number[];
  transmitted: number;
  received: number;
}

/** `ping -c count -i interval` from `from` to `addr`; median of every `time=` line in µs. */
export async function pingRtt(lab: Lab, from: string, addr: string, count = 20, interval = 0.05): Promise<RttResult> {
  const r = await lab.exec(from, ['ping', '-n', '-c', String(count), '-i', String(interval), '-W', '1', addr], {
    check: false,
    timeoutMs: Math.ceil(count * interval * 1000) + 15_000,
  });
  const out = r.stdout + r.stderr;
  const times = [...out.matchAll(/time[=<]([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
  const m = /(\d+) packets transmitted, (\d+) (?:packets )?received/.exec(out);
  const med = median(times);
  if (med === null) throw new Error(`ping ${from} -> ${addr}: no replies (${out.trim().split('\n').at(-2) ?? out.trim()})`);
  return { medianUs: Math.round(med), timesUs: times, transmitted: m ? Number(m[1]) : 0, received: m ? Number(m[2]) : times.length };
}

let clkTck: number | null = null;
function ticksPerSecond(): number {
  if (clkTck === null) {
    try {
      clkTck = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      clkTck = 100;
    }
  }
  return clkTck;
}

/** utime+stime (all threads of the process) in clock ticks, null if the process is gone. */
export function cpuTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(rest[11]) + Number(rest[12]); // fields 14 and 15
  } catch {
    return null;
  }
}

/**
 * Starts sampling the CPU time of the named pids; `stop()` returns each one's share of
 * one core (%) over the wall time in between. With `pollMs`, the counters are also read
 * every pollMs, so that a process that exits before stop() (an iperf3 client or a one-shot
 * server) still reports what it used up to its last reading.
 */
export function cpuSampler(pids: Record<string, number | undefined>, pollMs?: number): { stop(): Record<string, number | null> } {
  const t0 = process.hrtime.bigint();
  const start: Record<string, number | null> = {};
  const last: Record<string, number | null> = {};
  for (const [k, pid] of Object.entries(pids)) last[k] = start[k] = pid && pid > 0 ? cpuTicks(pid) : null;
  const read = () => {
    for (const [k, pid] of Object.entries(pids)) {
      const t = pid && pid > 0 ? cpuTicks(pid) : null;
      if (t !== null) {
        last[k] = t;
        if (start[k] === null) start[k] = t; // first seen after the start
      }
    }
  };
  const timer = pollMs ? setInterval(read, pollMs) : undefined;
  timer?.unref();
  return {
    stop() {
      clearInterval(timer);
      read();
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const out: Record<string, number | null> = {};
      for (const k of Object.keys(pids)) {
        const a = start[k];
        const b = last[k];
        out[k] = a === null || a === undefined || b === null || b === undefined || wall <= 0 ? null : round1((100 * (b - a)) / ticksPerSecond() / wall);
      }
      return out;
    },
  };
}

/** Busy, softirq and total jiffies of the whole machine (first line of /proc/stat). */
function machineTicks(): { busy: number; softirq: number; total: number } | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0); // user..steal (guest is inside user)
    const idle = (f[3] ?? 0) + (f[4] ?? 0); // idle + iowait
    return { busy: total - idle, softirq: f[6] ?? 0, total };
  } catch {
    return null;
  }
}

/**
 * Busy CPU of the whole machine (every process, this benchmark's and anybody else's) between
 * start and stop(), in % of one core (2 cores fully busy = 200), and the part of it spent in
 * softirq (packet processing the kernel does not charge to any one process).
 */
export function machineCpuSampler(): { stop(): { machine: number | null; machine_softirq: number | null } } {
  const a = machineTicks();
  const ncpu = (() => {
    try {
      return readFileSync('/proc/stat', 'utf8').split('\n').filter((l) => /^cpu\d+ /.test(l)).length || 1;
    } catch {
      return 1;
    }
  })();
  return {
    stop() {
      const b = machineTicks();
      if (!a || !b || b.total <= a.total) return { machine: null, machine_softirq: null };
      const pct = (x: number) => round1((100 * ncpu * x) / (b.total - a.total));
      return { machine: pct(b.busy - a.busy), machine_softirq: pct(b.softirq - a.softirq) };
    },
  };
}
