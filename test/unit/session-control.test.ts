import { describe, expect, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { SessionControl } from '../../shared/session-control.js';

describe('session control messages (CTRL)', () => {
  const k1 = randomBytes(32);
  const k2 = randomBytes(32);
  // VR 1 (session 5 towards VR 2, whose index for us is 7) and VR 2 (session 7 towards VR 1).
  const a = new SessionControl(1);
  a.register(5, { txKey: k1, rxKey: k2, remoteIndex: 7, vr: 2 });
  const b = new SessionControl(2);
  b.register(7, { txKey: k2, rxKey: k1, remoteIndex: 5, vr: 1 });

  it('round trip names the sending VR', () => {
    const m = a.encode(5, { op: 'host', network: 1, address: '10.1.0.11', vr: 1 })!;
    expect(b.decode(m)).toEqual({ vr: 1, session: 7, payload: { op: 'host', network: 1, address: '10.1.0.11', vr: 1 } });
  });

  it('rejects replays, tampering, wrong keys and unknown sessions', () => {
    const m = a.encode(5, { op: 'host', network: 1, address: '10.1.0.12', vr: 1 })!;
    expect(b.decode(Buffer.from(m))).not.toBeNull();
    expect(b.decode(Buffer.from(m))).toBeNull(); // replay
    for (const i of [0, 10, 20, 30, m.length - 1]) {
      const t = Buffer.from(a.encode(5, { op: 'host', network: 1, address: '10.1.0.13', vr: 1 })!);
      t[i] ^= 1;
      expect(b.decode(t)).toBeNull();
    }
    const stranger = new SessionControl(9);
    stranger.register(5, { txKey: randomBytes(32), rxKey: randomBytes(32), remoteIndex: 7, vr: 2 });
    expect(b.decode(stranger.encode(5, { op: 'host' })!)).toBeNull();
    expect(b.decode(randomBytes(10))).toBeNull();
    expect(a.encode(99, {})).toBeNull();
  });

  it('a burst of messages (thousands within a millisecond) all decode, in order: the counter never steps back', () => {
    const ms = Array.from({ length: 3000 }, (_, i) => a.encode(5, { op: 'host', n: i })!);
    const counters = ms.map((m) => m.readBigUInt64BE(16));
    expect(counters.every((c, i) => i === 0 || c > counters[i - 1]!)).toBe(true);
    expect(ms.filter((m) => b.decode(m) !== null)).toHaveLength(3000);
  });
});
