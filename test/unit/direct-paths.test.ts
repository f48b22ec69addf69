// The TinyVR's side of direct paths (tinyvr/direct-paths.ts) with a fake engine: a real
// handshake with an introduced peer, renewal with the FullVR that introduced it, revocation,
// and the budget on INITs. The lab test (test/lab/direct.test.ts) proves the path on real
// packets; this pins the rules that the lab cannot time (renewal every 10 s, INIT floods).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { DirectPaths, RENEW_MS } from '../../tinyvr/direct-paths.js';
import { Initiator, type Established } from '../../shared/initiator.js';
import { generateKeyPair, loadPrivateKey, publicKeyOf } from '../../shared/handshake.js';
import { SessionIndexAllocator } from '../../shared/session-index.js';
import { AuthMode, type PacketEngine } from '../../shared/packet-engine.js';
import type { SessionControl } from '../../shared/session-control.js';

const PEER = { host: '203.0.113.2', port: 40002 };

function fakeEngine() {
  const raw: Array<{ host: string; port: number; msg: Buffer }> = [];
  const sessions = new Map<number, unknown>();
  const engine = {
    sendRaw: (host: string, port: number, msg: Buffer) => void raw.push({ host, port, msg: Buffer.from(msg) }),
    sendKeepalive: () => {},
    sessionInfo: (i: number) => (sessions.has(i) ? { rxDataPackets: 0, lastRxMs: Number(process.hrtime.bigint()) / 1e6, peerHost: PEER.host, peerPort: PEER.port } : null),
    setSession: (i: number, s: unknown) => void sessions.set(i, s),
    deleteSession: (i: number) => void sessions.delete(i),
  };
  return { engine: engine as unknown as PacketEngine, raw, sessions };
}

function setup() {
  const { engine, raw, sessions } = fakeEngine();
  const sent: Array<[number, Record<string, unknown>]> = [];
  const control = { send: (_e: unknown, s: number, p: Record<string, unknown>) => (sent.push([s, p]), true) } as unknown as SessionControl;
  const vrSessions = new Map([[7, 3]]); // FullVR 7: our session 3 with it
  const direct = new DirectPaths({ engine, indices: new SessionIndexAllocator(), control, mode: () => AuthMode.GMAC, idleMs: 0, onRoutes: () => {}, sessionOfVr: (vr) => vrSessions.get(vr) ?? 0 });
  // The peer: its own key, introduced to us by FullVR 7 (we respond, it initiates).
  const peerKey = loadPrivateKey(generateKeyPair().privateKey);
  const peerPub = publicKeyOf(peerKey);
  const intro = { op: 'direct', net: 1, addrs: ['10.2.0.11'], endpoint: `${PEER.host}:${PEER.port}`, key: peerPub, initiate: false };
  return { direct, raw, sessions, sent, vrSessions, peerKey, peerPub, intro };
}

/** The peer's side of the handshake, through its own fake engine; resolves when it is established. */
function handshake(x: ReturnType<typeof setup>): Promise<Established> {
  const theirs = fakeEngine();
  return new Promise((resolve) => {
    const ini = new Initiator({
      engine: theirs.engine,
      indices: new SessionIndexAllocator(),
      responderPublic: Buffer.from(x.direct.publicKey, 'base64'),
      initiatorStatic: x.peerKey,
      senderId: 0,
      host: '198.51.100.2',
      port: 40001,
      payload: () => ({ kind: 'direct' }),
      onEstablished: (s) => {
        ini.stop();
        resolve(s);
      },
    });
    ini.start();
    const init = theirs.raw.shift()!.msg;
    x.raw.length = 0;
    expect(x.direct.handleInit(init, PEER.host, PEER.port)).toBe(true);
    const resp = x.raw.at(-1)!.msg; // our RESP
    ini.handleResp(resp.readUInt32BE(4), resp);
  });
}

describe('direct paths at the TinyVR', () => {
  afterEach(() => void vi.useRealTimers());

  it('an introduced peer handshakes; the open path is renewed with the introducing FullVR every RENEW_MS, on our current session with it', async () => {
    vi.useFakeTimers({ toFake: ['hrtime', 'setTimeout', 'clearTimeout', 'setInterval', 'clearInterval'] });
    const x = setup();
    x.direct.handleIntro(7, x.intro);
    expect(x.direct.status()[0]).toMatchObject({ state: 'punching' });
    await handshake(x);
    expect(x.direct.status()[0]).toMatchObject({ state: 'up', peer: ['10.2.0.11'] });
    expect(x.direct.introducers()).toEqual(new Set([7]));
    x.direct.tick();
    expect(x.sent).toEqual([]);
    x.vrSessions.set(7, 8); // we rejoined FullVR 7 meanwhile: session 8 now
    vi.advanceTimersByTime(RENEW_MS);
    x.direct.tick();
    expect(x.sent).toEqual([[8, { op: 'direct', addr: '10.2.0.11', key: x.peerPub }]]);
    // The FullVR's answer, a new introduction of the same peer, leaves the path as it is.
    x.direct.handleIntro(7, { ...x.intro, initiate: true });
    expect(x.direct.status()[0]).toMatchObject({ state: 'up' });
    // No session with the introducer: nothing is sent, the path stays (asked again next turn).
    x.vrSessions.delete(7);
    vi.advanceTimersByTime(RENEW_MS);
    x.direct.tick();
    expect(x.sent).toHaveLength(1);
    expect(x.direct.status()[0]).toMatchObject({ state: 'up' });
  });

  it('a revocation with the peer key drops the path and its session at once; another key changes nothing', async () => {
    const x = setup();
    x.direct.handleIntro(7, x.intro);
    await handshake(x);
    expect(x.sessions.size).toBe(1);
    x.direct.handleRevoke({ key: publicKeyOf(loadPrivateKey(generateKeyPair().privateKey)) });
    expect(x.direct.status()).toHaveLength(1);
    x.direct.handleRevoke({ key: x.peerPub });
    expect(x.direct.status()).toEqual([]);
    expect(x.sessions.size).toBe(0);
    expect(x.direct.counters.direct_revoked).toBe(1);
  });

  it('INITs are worked on only while a peer may handshake, and at most 50 a second', () => {
    vi.useFakeTimers({ toFake: ['hrtime', 'setTimeout', 'clearTimeout'] });
    const x = setup();
    const junk = Buffer.alloc(148, 1);
    junk[0] = 1;
    expect(x.direct.handleInit(junk, PEER.host, PEER.port)).toBe(false);
    expect(x.direct.counters.direct_inits_dropped).toBe(0); // no peer: dropped before any budget
    x.direct.handleIntro(7, x.intro);
    for (let i = 0; i < 60; i++) x.direct.handleInit(junk, PEER.host, PEER.port);
    expect(x.direct.counters.direct_inits_dropped).toBe(10);
    vi.advanceTimersByTime(1000);
    x.direct.handleInit(junk, PEER.host, PEER.port);
    expect(x.direct.counters.direct_inits_dropped).toBe(10);
  });
});
