// The FullVRs the authority knows, with their health as reported by heartbeats.
import { monotonicMs } from './clock.js';

export interface FullvrEntry {
  id: number;
  endpoint: string;
  publicKey: string;
  provider: string | null;
  region: string | null;
  networks: number[];
  /** Operator default: preferred when neither provider nor region matches. */
  isDefault: boolean;
}

export interface FullvrHealth {
  lastHeartbeatMono: number;
  members: number;
  load: number;
  peersUp: number;
  /** Per-peer link metrics as the FullVR measured them. */
  peers?: unknown[];
}

export class FullvrRegistry {
  private entries = new Map<number, FullvrEntry>();
  private health = new Map<number, FullvrHealth>();
  private lastState = new Map<number, boolean>();

  constructor(
    entries: FullvrEntry[],
    private timeoutMs: number,
  ) {
    for (const e of entries) this.entries.set(e.id, e);
  }

  get(id: number): FullvrEntry | undefined {
    return this.entries.get(id);
  }

  all(): FullvrEntry[] {
    return [...this.entries.values()];
  }

  add(e: FullvrEntry): void {
    this.entries.set(e.id, e);
  }

  heartbeat(id: number, h: { members: number; load: number; peersUp: number; peers?: unknown[] }): boolean {
    if (!this.entries.has(id)) return false;
    this.health.set(id, { ...h, lastHeartbeatMono: monotonicMs() });
    return true;
  }

  isHealthy(id: number, now = monotonicMs()): boolean {
    const h = this.health.get(id);
    return !!h && now - h.lastHeartbeatMono <= this.timeoutMs;
  }

  /**
   * Report FullVRs whose health changed since the last call (a VR went silent, or came back).
   * The server calls this every second and logs/alerts on each transition.
   */
  transitions(now = monotonicMs()): Array<{ id: number; healthy: boolean; silentMs: number | null }> {
    const out: Array<{ id: number; healthy: boolean; silentMs: number | null }> = [];
    for (const e of this.entries.values()) {
      const h = this.isHealthy(e.id, now);
      const was = this.lastState.get(e.id);
      if (was === undefined && !h) {
        this.lastState.set(e.id, h); // never heard of yet: not a transition
        continue;
      }
      if (was !== h) {
        this.lastState.set(e.id, h);
        const hb = this.health.get(e.id);
        out.push({ id: e.id, healthy: h, silentMs: hb ? Math.round(now - hb.lastHeartbeatMono) : null });
      }
    }
    return out;
  }

  remove(id: number): void {
    this.entries.delete(id);
    this.health.delete(id);
    this.lastState.delete(id);
  }

  load(id: number): number {
    return this.health.get(id)?.load ?? Number.POSITIVE_INFINITY;
  }

  status(): unknown[] {
    const now = monotonicMs();
    return this.all().map((e) => {
      const h = this.health.get(e.id);
      return {
        ...e,
        healthy: this.isHealthy(e.id, now),
        lastHeartbeatAgoMs: h ? Math.round(now - h.lastHeartbeatMono) : null,
        members: h?.members ?? null,
        load: h?.load ?? null,
        peers: h?.peers ?? null,
      };
    });
  }
}
