// Pushes each FullVR its signed routing tables over Server-Sent Events: the full tables on
// connect (so a restarted FullVR recovers everything) and again after every change.
import type { Request, Response } from 'express';
import type { SigningKey } from '../shared/join-token.js';
import { signTables, type TablesBody } from '../shared/signed-tables.js';

export class TablePush {
  private clients = new Map<number, Set<Response>>();
  private keepalive: NodeJS.Timeout;

  constructor(
    private key: SigningKey,
    private compute: (fullvrId: number) => TablesBody | null,
  ) {
    // Comments keep idle proxies and NATs from closing the stream.
    this.keepalive = setInterval(() => {
      for (const set of this.clients.values()) for (const res of set) res.write(': keepalive\n\n');
    }, 15_000);
    this.keepalive.unref();
  }

  get connected(): number[] {
    return [...this.clients.entries()].filter(([, s]) => s.size > 0).map(([id]) => id);
  }

  handle(req: Request, res: Response, fullvrId: number): void {
    const first = this.compute(fullvrId);
    if (!first) {
      res.status(404).json({ error: `unknown FullVR ${fullvrId}` });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-store', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    res.flushHeaders();
    let set = this.clients.get(fullvrId);
    if (!set) this.clients.set(fullvrId, (set = new Set()));
    set.add(res);
    this.send(res, first);
    req.on('close', () => set!.delete(res));
  }

  /** After any change of the authority's state. */
  broadcast(): void {
    for (const [id, set] of this.clients) {
      if (!set.size) continue;
      const t = this.compute(id);
      if (t) for (const res of set) this.send(res, t);
    }
  }

  close(): void {
    clearInterval(this.keepalive);
    for (const set of this.clients.values()) for (const res of set) res.end();
    this.clients.clear();
  }

  private send(res: Response, t: TablesBody): void {
    res.write(`id: ${t.version}\nevent: tables\ndata: ${JSON.stringify(signTables(this.key.privateKey, t))}\n\n`);
  }
}
