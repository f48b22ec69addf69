// Measurement helpers for the benchmark: iperf3 TCP runs, ping RTT, per-process CPU.
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import type { Lab } from '../lab/topology.js';

export function median(xs: readonly number[]): number | null {
  if (xs.length === 0) return null;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export const round1 = (x: number): number => Math.round(x * 10) / 10;

export interface TcpSample {
  /** Receiver-side Mbit/s (end.sum_received.bits_per_second / 1e6). */
  mbps: number;
  /** Sender-side TCP retransmits (end.sum_sent.retransmits). */
  retransmits: number | null;
  /** Per-interval (1 s) Mbit/s as the client saw them, to spot stalls. */
  intervalsMbps: number[];
  seconds: number;
}

/**
 * One iperf3 TCP test: server in `serverNode` bound to `addr` (one test, -1), client in
 * `clientNode`, one stream, -J. Throws with a readable message when it fails.
 */
export async function iperfTcp(lab: Lab, clientNode: string, serverNode: string, addr: string, port: number, seconds: number): Promise<TcpSample> {
  const srv = lab.spawn(serverNode, ['iperf3', '-s', '-1', '--forceflush', '-B', addr, '-p', String(port)]);
  try {
    await srv.waitForLog(/Server listening/, 5000);
    const r = await lab.exec(
      clientNode,
      ['iperf3', '-c', addr, '-p', String(port), '-t', String(seconds), '-P', '1', '-J', '--connect-timeout', '5000'],
      { check: false, timeoutMs: (seconds + 25) * 1000 },
    );
    if (r.timedOut) throw new Error(`iperf3 ${clientNode} -> ${addr}: client timed out after ${seconds + 25} s`);
    let j: any;
    try {
      j = JSON.parse(r.stdout);
    } catch {
      throw new Error(`iperf3 ${clientNode} -> ${addr}: no JSON output (exit ${r.code}): ${(r.stderr || r.stdout).trim().split('\n')[0] ?? ''}`);
    }
    if (j.error) throw new Error(`iperf3 ${clientNode} -> ${addr}: ${j.error}`);
    const bps = j?.end?.sum_received?.bits_per_second;
    if (typeof bps !== 'number' || !(bps > 0)) throw new Error(`iperf3 ${clientNode} -> ${addr}: no receiver-side throughput in the result`);
    const intervals: number[] = (j.intervals ?? []).map((iv: any) => round1((iv?.sum?.bits_per_second ?? 0) / 1e6));
    return {
      mbps: bps / 1e6,
      retransmits: typeof j.end.sum_sent?.retransmits === 'number' ? j.end.sum_sent.retransmits : null,
      intervalsMbps: intervals,
      seconds: j.end.sum_received.seconds ?? seconds,
    };
  } finally {
    await srv.kill('SIGTERM', 2000);
  }
}

export interface RttResult {
  /** Median of the per-packet `time=` values, in µs. */
  medianUs: number;
  samples: number;
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
  return { medianUs: Math.round(med), samples: times.length, transmitted: m ? Number(m[1]) : 0, received: m ? Number(m[2]) : times.length };
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
 * one core (%) over the wall time in between.
 */
export function cpuSampler(pids: Record<string, number | undefined>): { stop(): Record<string, number | null> } {
  const t0 = process.hrtime.bigint();
  const start: Record<string, number | null> = {};
  for (const [k, pid] of Object.entries(pids)) start[k] = pid && pid > 0 ? cpuTicks(pid) : null;
  return {
    stop() {
      const wall = Number(process.hrtime.bigint() - t0) / 1e9;
      const out: Record<string, number | null> = {};
      for (const [k, pid] of Object.entries(pids)) {
        const a = start[k];
        const b = pid && pid > 0 ? cpuTicks(pid) : null;
        out[k] = a === null || a === undefined || b === null || wall <= 0 ? null : round1((100 * (b - a)) / ticksPerSecond() / wall);
      }
      return out;
    },
  };
}
