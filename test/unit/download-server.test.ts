import { describe, expect, it } from 'vitest';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { answerClientErrors } from '../../download-server/client-error.js';
import { clientAddress } from '../../download-server/client-address.js';
import { FullvrRegistry, type FullvrEntry } from '../../download-server/registry.js';
import { chooseFullvr } from '../../download-server/selection.js';

describe('client address', () => {
  it('uses the socket peer and ignores forwarding headers from untrusted peers', () => {
    expect(clientAddress('::ffff:198.51.100.2', { 'x-forwarded-for': '203.0.113.50' }, [])).toBe('198.51.100.2');
    expect(clientAddress('198.51.100.2', { forwarded: 'for=203.0.113.50' }, ['10.0.0.0/8'])).toBe('198.51.100.2');
  });
  it('believes a trusted proxy, walking right to left past trusted hops', () => {
    const proxies = ['10.0.0.0/8'];
    expect(clientAddress('10.0.0.5', { 'x-forwarded-for': '203.0.113.50' }, proxies)).toBe('203.0.113.50');
    // The client itself may lie in the leftmost entry; only what our proxies appended counts.
    expect(clientAddress('10.0.0.5', { 'x-forwarded-for': '1.2.3.4, 203.0.113.50, 10.0.0.9' }, proxies)).toBe('203.0.113.50');
    expect(clientAddress('10.0.0.5', { forwarded: 'for="[2001:db8::1]:4711";proto=http' }, proxies)).toBe('2001:db8::1');
  });
  it('garbage in the header falls back to the proxy address', () => {
    expect(clientAddress('10.0.0.5', { 'x-forwarded-for': 'not-an-ip' }, ['10.0.0.0/8'])).toBe('10.0.0.5');
    expect(clientAddress(undefined, {}, [])).toBeNull();
  });
});

describe('FullVR selection', () => {
  const e = (id: number, provider: string | null, region: string | null, extra: Partial<FullvrEntry> = {}): FullvrEntry => ({
    id,
    endpoint: `192.0.2.${id}:4789`,
    publicKey: 'k',
    provider,
    region,
    networks: [1],
    isDefault: false,
    ...extra,
  });
  const reg = (entries: FullvrEntry[], loads: Record<number, number>, down: number[] = []) => {
    const r = new FullvrRegistry(entries, 10_000);
    for (const x of entries) if (!down.includes(x.id)) r.heartbeat(x.id, { members: loads[x.id] ?? 0, load: loads[x.id] ?? 0, peersUp: 0 });
    return r;
  };
  const ask = (r: FullvrRegistry, provider: string, region: string | null, pins = []) => chooseFullvr(r, { ip: '198.51.100.7', provider, region, network: 1, pins });

  it('prefers same provider and region, then same provider, then the operator default, then any', () => {
    const all = [e(1, 'aws', 'us-east-1'), e(2, 'aws', 'eu-west-1'), e(3, 'gcp', 'europe-west1'), e(4, null, null, { isDefault: true })];
    const r = reg(all, { 1: 5, 2: 1 });
    expect(ask(r, 'aws', 'us-east-1')).toMatchObject({ fullvr: { id: 1 }, why: expect.stringContaining('same provider and region') });
    expect(ask(r, 'aws', 'ap-south-1')).toMatchObject({ fullvr: { id: 2 }, why: expect.stringContaining('same provider (aws)') });
    expect(ask(r, 'azure', 'eastus')).toMatchObject({ fullvr: { id: 4 }, why: expect.stringContaining('operator default') });
    const noDefault = reg(all.slice(0, 3), { 1: 5, 2: 1, 3: 9 });
    expect(ask(noDefault, 'oracle', null)).toMatchObject({ fullvr: { id: 2 }, why: expect.stringContaining('any healthy') });
  });

  it('picks the least loaded among equals and skips silent FullVRs', () => {
    const all = [e(1, 'aws', 'us-east-1'), e(2, 'aws', 'us-east-1'), e(3, 'aws', 'us-east-1')];
    expect(ask(reg(all, { 1: 10, 2: 3, 3: 7 }), 'aws', 'us-east-1')).toMatchObject({ fullvr: { id: 2 } });
    expect(ask(reg(all, { 1: 10, 2: 3, 3: 7 }, [2]), 'aws', 'us-east-1')).toMatchObject({ fullvr: { id: 3 } });
    expect(ask(reg(all, {}, [1, 2, 3]), 'aws', 'us-east-1')).toEqual({ error: expect.stringContaining('no healthy FullVR') });
  });

  it('operator pins win when the pinned FullVR is healthy', () => {
    const all = [e(1, 'aws', 'us-east-1'), e(2, 'gcp', 'europe-west1')];
    const pins = [{ provider: 'aws', cidr: '198.51.100.0/24', fullvr: 2 }] as never;
    expect(ask(reg(all, {}), 'aws', 'us-east-1', pins)).toMatchObject({ fullvr: { id: 2 }, why: expect.stringContaining('operator pin') });
    expect(ask(reg(all, {}, [2]), 'aws', 'us-east-1', pins)).toMatchObject({ fullvr: { id: 1 } });
  });

  it('only FullVRs serving the requested network are candidates', () => {
    const r = reg([e(1, 'aws', 'us-east-1', { networks: [2] })], {});
    expect(ask(r, 'aws', 'us-east-1')).toEqual({ error: 'no FullVR serves network 1' });
  });
});

describe('FullVR health transitions', () => {
  it('reports a FullVR going silent and coming back, once each', () => {
    const r = new FullvrRegistry([{ id: 1, endpoint: 'x:1', publicKey: 'k', provider: null, region: null, networks: [1], isDefault: false }], 1000);
    expect(r.transitions(0)).toEqual([]); // never heard from: not a transition
    r.heartbeat(1, { members: 0, load: 0, peersUp: 0 });
    const t0 = Number(process.hrtime.bigint() / 1_000_000n);
    expect(r.transitions(t0)).toEqual([{ id: 1, healthy: true, silentMs: expect.any(Number) }]);
    expect(r.transitions(t0 + 10)).toEqual([]);
    expect(r.transitions(t0 + 5000)).toEqual([{ id: 1, healthy: false, silentMs: expect.any(Number) }]);
    expect(r.transitions(t0 + 6000)).toEqual([]);
    r.heartbeat(1, { members: 0, load: 0, peersUp: 0 });
    expect(r.transitions()).toEqual([{ id: 1, healthy: true, silentMs: expect.any(Number) }]);
  });
});

describe('requests the HTTP parser rejects', () => {
  // A raw client that sends `head` at full speed and reports what came back and how the
  // connection ended ('end' = orderly close, or the socket error code such as ECONNRESET).
  const exchange = (port: number, head: string) =>
    new Promise<{ reply: string; ended: string }>((res) => {
      const chunks: Buffer[] = [];
      const s = connect(port, '127.0.0.1', () => s.write(head));
      s.on('data', (d) => chunks.push(d));
      s.on('error', (e: NodeJS.ErrnoException) => res({ reply: Buffer.concat(chunks).toString(), ended: e.code ?? 'error' }));
      s.on('end', () => {
        s.end();
        res({ reply: Buffer.concat(chunks).toString(), ended: 'end' });
      });
    });
  const withServer = async (fn: (port: number) => Promise<void>) => {
    const server = createServer({ maxHeaderSize: 8192 }, (_q, r) => r.end('ok'));
    answerClientErrors(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      await fn((server.address() as { port: number }).port);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  };

  it('oversized headers get a complete 431 refusal script and an orderly close, not a reset', async () => {
    await withServer(async (port) => {
      // 256 KB of header: far more than the socket buffers hold, so the client is still
      // sending when the server answers (Node's default handler resets such connections).
      for (let i = 0; i < 5; i++) {
        const r = await exchange(port, `GET /join HTTP/1.1\r\nHost: x\r\nX-Junk: ${'x'.repeat(256 * 1024)}\r\n\r\n`);
        expect(r.ended).toBe('end');
        expect(r.reply).toMatch(/^HTTP\/1\.1 431 /);
        expect(r.reply.split('\r\n\r\n')[1]).toBe("echo 'tinyvine: request headers too large' >&2; exit 3\n");
      }
    });
  });

  it('garbage gets a 400 refusal script; the server keeps serving', async () => {
    await withServer(async (port) => {
      const r = await exchange(port, 'NOT HTTP AT ALL\r\n\r\n');
      expect(r.reply).toMatch(/^HTTP\/1\.1 400 /);
      expect(r.reply).toContain("echo 'tinyvine: malformed HTTP request' >&2; exit 3");
      const ok = await exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
      expect(ok.reply).toMatch(/^HTTP\/1\.1 200 [\s\S]*ok$/);
    });
  });
});
