// Peer liveness as the FullVR reports it (status, metrics for the authority), with a fake
// engine: only session bookkeeping is exercised here; the lab tests run real sessions.
import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { generateKeyPair, loadPrivateKey, loadPublicKey } from '../../shared/handshake.js';
import { AuthMode, monotonicMs, type PacketEngine } from '../../shared/packet-engine.js';
import { RoutingTables } from '../../shared/routing-tables.js';
import { SessionIndexAllocator } from '../../shared/session-index.js';
import { FullvrDatapath } from '../../fullvr/datapath.js';
import { Peers } from '../../fullvr/peers.js';

/** Just enough of a PacketEngine for Peers: sessions with a settable last-receive time. */
function fakeEngine() {
  const lastRx = new Map<number, number>();
  const engine = {
    setSession: (i: number) => void lastRx.set(i, 0),
    deleteSession: (i: number) => void lastRx.delete(i),
    sendKeepalive: () => {},
    sessionInfo: (i: number) =>
      lastRx.has(i) ? { lastRxMs: lastRx.get(i)!, rxPackets: 0, rxBytes: 0, rxDataPackets: 0, txPackets: 0, txBytes: 0, peerHost: '203.0.113.2', peerPort: 4789 } : null,
  };
  return { engine: engine as unknown as PacketEngine, lastRx };
}

describe('Peers', () => {
  it('a peer heard only on the previous session is up (after crossing handshakes each side sends on the other one)', () => {
    const { engine, lastRx } = fakeEngine();
    const peerKey = generateKeyPair();
    const dp = new FullvrDatapath(new RoutingTables(), 1, 8);
    const peers = new Peers(1, loadPrivateKey(generateKeyPair().privateKey), engine, new SessionIndexAllocator(), dp, AuthMode.GMAC, 2000, [
      { id: 2, host: '203.0.113.2', port: 4789, publicKey: loadPublicKey(peerKey.publicKey), publicKeyB64: peerKey.publicKey },
    ]);
    const open = (index: number) => {
      peers.accept(2, index, 40 + index, randomBytes(32), randomBytes(32), '203.0.113.2', 4789);
      peers.confirm(index); // the initiator's first keepalive
    };
    open(5);
    open(6); // the crossing handshake: 6 is current, 5 previous
    expect(peers.status()).toMatchObject([{ id: 2, session: 6, up: false, lastRxAgoMs: null }]);
    lastRx.set(5, monotonicMs()); // the peer keeps sending on its side of session 5
    expect(peers.status()).toMatchObject([{ id: 2, session: 6, up: true }]);
    expect(peers.metrics()).toMatchObject([{ id: 2, up: true }]);
    lastRx.set(5, monotonicMs() - 7000); // silent for more than three keepalives
    expect(peers.status()).toMatchObject([{ up: false }]);
    expect(peers.metrics()).toMatchObject([{ up: false }]);
  });
});
