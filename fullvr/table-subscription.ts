// Keeps a long-lived Server-Sent Events stream open to the authority and hands every
// tables message to the FullVR. On reconnect the authority sends the full current tables,
// so a restarted FullVR (or one that missed changes) catches up at once.
import { log } from '../shared/log.js';

export function subscribeTables(o: {
  url: string;
  id: number;
  apiToken?: string;
  onMessage: (data: unknown) => void;
}): () => void {
  let stopped = false;
  let ctrl: AbortController | null = null;
  let delay = 250;
  const url = `${o.url.replace(/\/+$/, '')}/api/v1/fullvrs/${o.id}/tables/stream`;
  const loop = async () => {
    while (!stopped) {
      ctrl = new AbortController();
      try {
        const r = await fetch(url, {
          headers: { accept: 'text/event-stream', ...(o.apiToken ? { authorization: `Bearer ${o.apiToken}` } : {}) },
          signal: ctrl.signal,
        });
        if (!r.ok || !r.body) throw new Error(`HTTP ${r.status}`);
        delay = 250;
        log.info('tables stream connected', { url });
        const dec = new TextDecoder();
        let buf = '';
        for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
          buf += dec.decode(chunk, { stream: true });
          let end;
          while ((end = buf.indexOf('\n\n')) >= 0) {
            const ev = buf.slice(0, end);
            buf = buf.slice(end + 2);
            const data = ev
              .split('\n')
              .filter((l) => l.startsWith('data:'))
              .map((l) => l.slice(5).trimStart())
              .join('\n');
            if (!data) continue; // comments / keepalives
            try {
              o.onMessage(JSON.parse(data));
            } catch (e) {
              log.warn('tables message rejected', { error: (e as Error).message });
            }
          }
        }
        throw new Error('stream ended');
      } catch (e) {
        if (stopped) return;
        log.warn('tables stream lost, reconnecting', { url, error: (e as Error).message, inMs: delay });
        await new Promise((r) => setTimeout(r, delay).unref());
        delay = Math.min(delay * 2, 5000);
      }
    }
  };
  void loop();
  return () => {
    stopped = true;
    ctrl?.abort();
  };
}
