// Reports this FullVR's health and load to the authority (download server), which only
// hands out FullVRs that reported recently.
import { log } from '../shared/log.js';

export interface HeartbeatBody {
  members: number;
  load: number;
  peersUp: number;
  /** The members themselves, so the authority knows its hosts. */
  memberList?: Array<{ network: number; address: string }>;
  /** Per-peer links: handshake RTT, throughput from real traffic since the last heartbeat. */
  peers?: Array<{ id: number; up: boolean; rttMs: number | null; rxBps: number; txBps: number }>;
}

export function startHeartbeats(o: { url: string; apiToken?: string; id: number; everyMs: number; body: () => HeartbeatBody }): () => void {
  let failing = false;
  const url = `${o.url.replace(/\/+$/, '')}/api/v1/fullvrs/${o.id}/heartbeat`;
  const beat = async () => {
    try {
      const r = await fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(o.apiToken ? { authorization: `Bearer ${o.apiToken}` } : {}) },
        body: JSON.stringify(o.body()),
        signal: AbortSignal.timeout(Math.min(5000, o.everyMs)),
      });
      if (!r.ok) throw new Error(`HTTP ${r.status}: ${(await r.text()).slice(0, 200)}`);
      if (failing) log.info('heartbeat ok again', { url });
      failing = false;
    } catch (e) {
      // Warn once per outage, not every few seconds.
      if (!failing) log.warn('heartbeat failed', { url, error: (e as Error).message });
      failing = true;
    }
  };
  void beat();
  const t = setInterval(() => void beat(), o.everyMs);
  t.unref();
  return () => clearInterval(t);
}
