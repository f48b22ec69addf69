import {
  createCipheriv,
  createHmac,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  randomBytes,
  type KeyObject,
} from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import {
  HandshakeError,
  InitReplayGuard,
  MAX_HANDSHAKE_LEN,
  consumeInit,
  consumeResp,
  createInit,
  generateKeyPair,
  loadPrivateKey,
  loadPublicKey,
  publicKeyOf,
  type InitiatorState,
  type StaticKey,
} from '../../shared/handshake.js';
import { HEADER_LEN, MsgType, WireError, decodeHeader } from '../../shared/wire.js';

const responderPair = generateKeyPair();
const responder = loadPrivateKey(responderPair.privateKey);
const responderPublic = loadPublicKey(responderPair.publicKey);
const vrPair = generateKeyPair();
const vr = loadPrivateKey(vrPair.privateKey);
const known = (k: string) => k === vrPair.publicKey;

function expectHandshakeError(fn: () => unknown, match?: RegExp): HandshakeError {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof HandshakeError)) throw new Error(`expected HandshakeError, got ${String(e)}`);
    if (match) expect(e.message).toMatch(match);
    return e;
  }
  throw new Error('expected HandshakeError, nothing thrown');
}

function tinyInit(payload: Record<string, unknown> = { token: 'join-token-123' }) {
  return createInit({ responderPublic, index: 17, senderId: 0, payload });
}

function vrInit(s: StaticKey = vr) {
  return createInit({ responderPublic, initiatorStatic: s, index: 0xfffffffe, senderId: 11, payload: { hello: 'vr' } });
}

function fullHandshake(init: ReturnType<typeof createInit>, isKnownInitiator?: (k: string) => boolean) {
  const got = consumeInit({ responder, message: init.message, isKnownInitiator });
  const r = got.respond({ index: 5000, senderId: 1, payload: { memberId: 3, ip: '10.0.0.3' } });
  const done = consumeResp(init.state, r.message);
  return { got, r, done };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('keys', () => {
  it('generate/load/publicKeyOf agree', () => {
    const p = generateKeyPair();
    expect(Buffer.from(p.publicKey, 'base64').length).toBe(32);
    expect(Buffer.from(p.privateKey, 'base64').length).toBe(32);
    const k = loadPrivateKey(p.privateKey);
    expect(publicKeyOf(k)).toBe(p.publicKey);
    expect(loadPublicKey(p.publicKey).toString('base64')).toBe(p.publicKey);
    expect(loadPublicKey(` ${p.publicKey}\n`).toString('base64')).toBe(p.publicKey);
  });

  it('rejects bad key text with a one-line message', () => {
    expectHandshakeError(() => loadPublicKey(randomBytes(31).toString('base64')), /^public key must be 32 bytes of base64, got 31 bytes$/);
    expectHandshakeError(() => loadPublicKey('not base64 at all!'), /^public key must be 32 bytes of base64, got non-base64/);
    expectHandshakeError(() => loadPublicKey(''), /got 0 bytes/);
    expectHandshakeError(() => loadPublicKey(undefined as unknown as string), /got undefined/);
    const e = expectHandshakeError(() => loadPrivateKey(responderPair.privateKey.slice(0, 40) + '!!!='), /^private key must be 32 bytes of base64/);
    expect(e.message).not.toContain(responderPair.privateKey.slice(0, 10)); // never echo secrets
    expect(e.message).not.toContain('\n');
  });
});

describe('handshake', () => {
  it('TinyVR (no static key) round trip', () => {
    const init = tinyInit();
    const h = decodeHeader(init.message);
    expect(h).toMatchObject({ type: MsgType.INIT, mode: 0, hops: 0, receiverIndex: 0, senderId: 0, networkId: 0, counter: 0n });
    const { got, r, done } = fullHandshake(init);
    expect(got.initiatorStatic).toBeNull();
    expect(got.remoteIndex).toBe(17);
    expect(got.senderId).toBe(0);
    expect(got.payload).toEqual({ token: 'join-token-123' });
    const rh = decodeHeader(r.message);
    expect(rh).toMatchObject({ type: MsgType.RESP, mode: 0, receiverIndex: 17, senderId: 1 });
    expect(done.remoteIndex).toBe(5000);
    expect(done.senderId).toBe(1);
    expect(done.payload).toEqual({ memberId: 3, ip: '10.0.0.3' });
    expect(done.txKey.length).toBe(32);
    expect(done.txKey.equals(r.rxKey)).toBe(true);
    expect(done.rxKey.equals(r.txKey)).toBe(true);
    expect(done.txKey.equals(done.rxKey)).toBe(false);
  });

  it('FullVR-to-FullVR round trip carries and authenticates the static key', () => {
    const init = vrInit();
    const { got, r, done } = fullHandshake(init, known);
    expect(got.initiatorStatic).toBe(vrPair.publicKey);
    expect(got.senderId).toBe(11);
    expect(got.remoteIndex).toBe(0xfffffffe);
    expect(got.payload).toEqual({ hello: 'vr' });
    expect(done.txKey.equals(r.rxKey)).toBe(true);
    expect(done.rxKey.equals(r.txKey)).toBe(true);
    expect(done.txKey.equals(done.rxKey)).toBe(false);
  });

  it('no secret material in clear: the payload is not visible in INIT/RESP', () => {
    const init = tinyInit({ token: 'SECRET-TOKEN-XYZ' });
    expect(init.message.includes('SECRET-TOKEN-XYZ')).toBe(false);
    const { r } = fullHandshake(init);
    expect(r.message.includes('10.0.0.3')).toBe(false);
    expect(vrInit().message.includes(vrPair.publicKey)).toBe(false);
  });

  it('two handshakes give different keys (fresh ephemerals)', () => {
    const a = fullHandshake(tinyInit()).done;
    const b = fullHandshake(tinyInit()).done;
    expect(a.txKey.equals(b.txKey)).toBe(false);
    expect(a.rxKey.equals(b.rxKey)).toBe(false);
    const c = fullHandshake(vrInit(), known).done;
    const d = fullHandshake(vrInit(), known).done;
    expect(c.txKey.equals(d.txKey)).toBe(false);
  });

  it('a VR initiator whose static key is not known is rejected (fail closed)', () => {
    const init = vrInit();
    expectHandshakeError(() => consumeInit({ responder, message: init.message, isKnownInitiator: () => false }), /unknown initiator/);
    expectHandshakeError(() => consumeInit({ responder, message: init.message }), /unknown initiator/);
  });

  it('an initiator claiming a static key it does not hold is rejected', () => {
    const attacker = loadPrivateKey(generateKeyPair().privateKey);
    // Claims vr's public key but signs the proof with its own private key.
    const forged: StaticKey = { privateKey: attacker.privateKey, publicRaw: vr.publicRaw };
    const init = vrInit(forged);
    expectHandshakeError(() => consumeInit({ responder, message: init.message, isKnownInitiator: known }), /does not hold its static key/);
  });

  it('a RESP from a responder that lacks the static key the initiator targeted fails', () => {
    const init = vrInit();
    const impostor = loadPrivateKey(generateKeyPair().privateKey);
    expectHandshakeError(() => consumeInit({ responder: impostor, message: init.message, isKnownInitiator: known }), /decryption failed/);
    expectHandshakeError(() => consumeInit({ responder: impostor, message: tinyInit().message }), /decryption failed/);
  });

  it('wrong responder public key on the initiator side fails', () => {
    const other = loadPublicKey(generateKeyPair().publicKey);
    const init = createInit({ responderPublic: other, index: 1, senderId: 0, payload: {} });
    expectHandshakeError(() => consumeInit({ responder, message: init.message }));
  });

  it('a RESP for a different INIT is rejected, and a completed state cannot be reused', () => {
    const a = tinyInit();
    const b = tinyInit();
    const rb = consumeInit({ responder, message: b.message }).respond({ index: 9, senderId: 1, payload: {} });
    expectHandshakeError(() => consumeResp(a.state, rb.message), /decryption failed/);
    consumeResp(b.state, rb.message);
    expectHandshakeError(() => consumeResp(b.state, rb.message), /already completed/);
  });

  it('respond() can be called only once per INIT', () => {
    const got = consumeInit({ responder, message: tinyInit().message });
    got.respond({ index: 9, senderId: 1, payload: {} });
    expectHandshakeError(() => got.respond({ index: 9, senderId: 1, payload: {} }), /already responded/);
  });

  it('validates caller arguments with HandshakeError', () => {
    for (const index of [0, -1, 2 ** 32, 1.5, NaN]) {
      expectHandshakeError(() => createInit({ responderPublic, index, senderId: 0, payload: {} }));
    }
    expectHandshakeError(() => createInit({ responderPublic: Buffer.alloc(31), index: 1, senderId: 0, payload: {} }));
    expectHandshakeError(() => createInit({ responderPublic, index: 1, senderId: 2 ** 32, payload: {} }));
    expectHandshakeError(() => createInit({ responderPublic, index: 1, senderId: 0, payload: { idx: 3 } }), /reserved/);
    expectHandshakeError(() => createInit({ responderPublic, index: 1, senderId: 0, payload: { n: 1n } }), /JSON/);
    expectHandshakeError(() => createInit({ responderPublic, index: 1, senderId: 0, payload: { big: 'x'.repeat(2000) } }), /max/);
    const got = consumeInit({ responder, message: tinyInit().message });
    expectHandshakeError(() => got.respond({ index: 0, senderId: 1, payload: {} }));
    expectHandshakeError(() => got.respond({ index: 1, senderId: 1, payload: { idx: 1 } }), /reserved/);
  });
});

describe('tampering', () => {
  it('every single-byte change in INIT is rejected (both initiator kinds)', () => {
    for (const init of [tinyInit(), vrInit()]) {
      const m = init.message;
      for (let i = 0; i < m.length; i++) {
        for (const x of [0x01, 0x80, 0xff]) {
          const t = Buffer.from(m);
          t[i] ^= x;
          expectHandshakeError(() => consumeInit({ responder, message: t, isKnownInitiator: known }));
        }
      }
      // the untouched message is still fine
      consumeInit({ responder, message: m, isKnownInitiator: known });
    }
  });

  it('every single-byte change in RESP is rejected, and the genuine RESP still works after', () => {
    for (const init of [tinyInit(), vrInit()]) {
      const r = consumeInit({ responder, message: init.message, isKnownInitiator: known }).respond({ index: 77, senderId: 1, payload: { a: 1 } });
      const m = r.message;
      for (let i = 0; i < m.length; i++) {
        for (const x of [0x01, 0x80, 0xff]) {
          const t = Buffer.from(m);
          t[i] ^= x;
          expectHandshakeError(() => consumeResp(init.state, t));
        }
      }
      expect(consumeResp(init.state, m).txKey.equals(r.rxKey)).toBe(true);
    }
  });

  it('every truncation and an extension are rejected', () => {
    const init = vrInit();
    for (let n = 0; n < init.message.length; n++) {
      expectHandshakeError(() => consumeInit({ responder, message: init.message.subarray(0, n), isKnownInitiator: known }));
    }
    expectHandshakeError(() => consumeInit({ responder, message: Buffer.concat([init.message, Buffer.alloc(1)]), isKnownInitiator: known }));
    const r = consumeInit({ responder, message: init.message, isKnownInitiator: known }).respond({ index: 3, senderId: 1, payload: {} });
    for (let n = 0; n < r.message.length; n++) expectHandshakeError(() => consumeResp(init.state, r.message.subarray(0, n)));
    expectHandshakeError(() => consumeResp(init.state, Buffer.concat([r.message, Buffer.alloc(1)])));
    consumeResp(init.state, r.message);
  });

  it('an INIT with a proof trailer spliced from another INIT is rejected', () => {
    const a = tinyInit();
    const b = vrInit();
    const spliced = Buffer.concat([a.message.subarray(0, a.message.length - 16), b.message.subarray(b.message.length - 16)]);
    expectHandshakeError(() => consumeInit({ responder, message: spliced, isKnownInitiator: known }));
  });
});

describe('replay guard', () => {
  it('rejects a replayed INIT but accepts a fresh one', () => {
    const guard = new InitReplayGuard();
    const init = tinyInit();
    consumeInit({ responder, message: init.message, guard });
    expectHandshakeError(() => consumeInit({ responder, message: init.message, guard }), /replayed/);
    consumeInit({ responder, message: tinyInit().message, guard });
    expect(guard.size).toBe(2);
  });

  it('does not record INITs that fail authentication', () => {
    const guard = new InitReplayGuard();
    const init = vrInit();
    expectHandshakeError(() => consumeInit({ responder, message: init.message, guard, isKnownInitiator: () => false }));
    expect(guard.size).toBe(0);
    consumeInit({ responder, message: init.message, guard, isKnownInitiator: known });
  });

  it('rejects stale and future timestamps', () => {
    const guard = new InitReplayGuard(120_000);
    vi.useFakeTimers({ toFake: ['Date'] });
    vi.setSystemTime(Date.now() - 121_000);
    const old = tinyInit();
    vi.setSystemTime(Date.now() + 2 * 121_000);
    const future = tinyInit();
    vi.useRealTimers();
    expectHandshakeError(() => consumeInit({ responder, message: old.message, guard }), /stale/);
    expectHandshakeError(() => consumeInit({ responder, message: future.message, guard }), /stale/);
    // without a guard the caller opted out of the ts check
    consumeInit({ responder, message: old.message });
  });

  it('a replay after the window is still rejected (by its stale ts), and memory is pruned', () => {
    const guard = new InitReplayGuard(1000);
    const e = randomBytes(32);
    const t0 = 1_000_000;
    guard.check(e, t0, t0);
    expect(() => guard.check(e, t0, t0 + 500)).toThrow(/replayed/);
    expect(() => guard.check(e, t0, t0 + 1001)).toThrow(/stale/);
    guard.check(randomBytes(32), t0 + 1001, t0 + 1001);
    expect(guard.size).toBe(1); // the first entry was pruned
  });

  it('stays bounded and never reopens a replay when full', () => {
    const guard = new InitReplayGuard(60_000, 100);
    const now = 5_000_000;
    const keys = Array.from({ length: 150 }, () => randomBytes(32));
    keys.forEach((k, i) => guard.check(k, now - 1000 + i, now));
    expect(guard.size).toBe(100);
    // keys[0..49] were evicted; replaying them must still fail
    for (let i = 0; i < 50; i++) expect(() => guard.check(keys[i], now - 1000 + i, now)).toThrow(HandshakeError);
    for (let i = 50; i < 150; i++) expect(() => guard.check(keys[i], now - 1000 + i, now)).toThrow(/replayed/);
    guard.check(randomBytes(32), now, now); // fresh ones still pass
  });
});

describe('fuzz', () => {
  function only(fn: () => unknown): void {
    try {
      fn();
    } catch (e) {
      if (!(e instanceof HandshakeError) && !(e instanceof WireError)) throw e;
    }
  }

  it('random buffers never throw anything but HandshakeError', () => {
    const state = tinyInit().state;
    for (let i = 0; i < 2000; i++) {
      const len = i % 4 === 0 ? Math.floor(Math.random() * 1400) : Math.floor(Math.random() * 200);
      const b = randomBytes(len);
      // Make many of them pass the header checks so the crypto paths get exercised.
      if (i % 2 === 0 && len >= HEADER_LEN) {
        b.fill(0, 0, HEADER_LEN);
        b[0] = 1;
        b[1] = i % 4 === 0 ? MsgType.INIT : MsgType.RESP;
        if (b[1] === MsgType.RESP) b.writeUInt32BE(state.index, 4);
      }
      expectHandshakeError(() => consumeInit({ responder, message: b, isKnownInitiator: () => true }));
      expectHandshakeError(() => consumeResp(state, b));
    }
  });

  it('random mutations of valid messages never throw anything but HandshakeError', () => {
    const guard = new InitReplayGuard();
    for (let i = 0; i < 2000; i++) {
      const init = i % 2 ? vrInit() : tinyInit();
      const m = Buffer.from(init.message);
      const op = i % 4;
      if (op === 0) {
        // distinct positions: two flips of one byte could cancel out and leave the valid message
        const at = new Set<number>();
        while (at.size < 1 + (i % 5)) at.add(Math.floor(Math.random() * m.length));
        for (const p of at) m[p] ^= 1 + Math.floor(Math.random() * 255);
      }
      const mm = op === 1 ? m.subarray(0, Math.floor(Math.random() * m.length)) : op === 2 ? Buffer.concat([m, randomBytes(1 + (i % 40))]) : m;
      if (op === 3) {
        // valid INIT: mutate the RESP instead
        const r = consumeInit({ responder, message: mm, isKnownInitiator: known, guard }).respond({ index: 1, senderId: 2, payload: {} });
        const t = Buffer.from(r.message);
        t[Math.floor(Math.random() * t.length)] ^= 1 + Math.floor(Math.random() * 255);
        expectHandshakeError(() => consumeResp(init.state, t));
        only(() => consumeResp(init.state, t.subarray(0, Math.floor(Math.random() * t.length))));
        continue;
      }
      expectHandshakeError(() => consumeInit({ responder, message: mm, isKnownInitiator: known, guard }));
    }
  });

  it('payload edge cases survive safely', () => {
    const init = createInit({ responderPublic, index: 1, senderId: 0, payload: JSON.parse('{"__proto__":{"x":1},"k":1}') });
    const got = consumeInit({ responder, message: init.message });
    expect(Object.getPrototypeOf(got.payload)).toBe(Object.prototype);
    expect(({} as Record<string, unknown>).x).toBeUndefined();
    expect(got.payload.k).toBe(1);
    expect(init.message.length).toBeLessThanOrEqual(MAX_HANDSHAKE_LEN);
  });
});

// An independent re-implementation of the key schedule documented at the top of
// shared/handshake.ts, used to forge correctly-encrypted messages with bad plaintexts.
describe('authenticated but malformed plaintexts', () => {
  const LABEL = 'tinyvine-v1';
  const SPKI = Buffer.from('302a300506032b656e032100', 'hex');
  const ck0 = Buffer.from(hkdfSync('sha256', LABEL, '', `${LABEL} ck0`, 32));
  const mix = (ck: Buffer, ikm: Buffer) => {
    const o = Buffer.from(hkdfSync('sha256', ikm, ck, `${LABEL} mix`, 64));
    return [o.subarray(0, 32), o.subarray(32)] as const;
  };
  const pub = (raw: Buffer) => createPublicKey({ key: Buffer.concat([SPKI, raw]), format: 'der', type: 'spki' });
  const raw = (k: KeyObject) => k.export({ format: 'der', type: 'spki' }).subarray(12);
  const seal = (key: Buffer, pt: Buffer, aad: Buffer) => {
    const c = createCipheriv('chacha20-poly1305', key, Buffer.alloc(12), { authTagLength: 16 });
    c.setAAD(aad, { plaintextLength: pt.length });
    return Buffer.concat([c.update(pt), c.final(), c.getAuthTag()]);
  };
  const hdr = (type: number, rx: number, sender: number) => {
    const b = Buffer.alloc(24);
    b[0] = 1;
    b[1] = type;
    b.writeUInt32BE(rx, 4);
    b.writeUInt32BE(sender, 8);
    return b;
  };

  function forgeInit(plaintext: string): Buffer {
    const e = generateKeyPairSync('x25519');
    const ei = raw(e.publicKey);
    const h = hdr(MsgType.INIT, 0, 0);
    const [ck1, k1] = mix(ck0, Buffer.concat([ei, responderPublic, diffieHellman({ privateKey: e.privateKey, publicKey: pub(responderPublic) })]));
    const body = Buffer.concat([h, ei, seal(k1, Buffer.from(plaintext), Buffer.concat([h, ei]))]);
    const [, k2] = mix(ck1, Buffer.alloc(0));
    return Buffer.concat([body, createHmac('sha256', k2).update(body).digest().subarray(0, 16)]);
  }

  function forgeResp(state: InitiatorState, plaintext: string): Buffer {
    const e = generateKeyPairSync('x25519');
    const er = raw(e.publicKey);
    const [, k3] = mix(state.ck2, Buffer.concat([state.initHash, er, diffieHellman({ privateKey: e.privateKey, publicKey: pub(state.ephemeralPub) })]));
    const aad = Buffer.concat([hdr(MsgType.RESP, state.index, 1), er]);
    return Buffer.concat([aad, seal(k3, Buffer.from(plaintext), aad)]);
  }

  it('the re-implementation matches (sanity)', () => {
    const got = consumeInit({ responder, message: forgeInit('{"idx":5,"ts":' + Date.now() + ',"t":"x"}') });
    expect(got.remoteIndex).toBe(5);
    expect(got.payload).toEqual({ t: 'x' });
    const init = tinyInit();
    expect(consumeResp(init.state, forgeResp(init.state, '{"idx":9}')).remoteIndex).toBe(9);
  });

  const now = Date.now();
  const badInits = [
    '',
    'not json',
    '[1,2]',
    'null',
    '42',
    '"str"',
    `{"ts":${now}}`,
    `{"idx":0,"ts":${now}}`,
    `{"idx":-1,"ts":${now}}`,
    `{"idx":4294967296,"ts":${now}}`,
    `{"idx":1.5,"ts":${now}}`,
    `{"idx":"1","ts":${now}}`,
    '{"idx":1}',
    '{"idx":1,"ts":"now"}',
    `{"idx":1,"ts":${now},"static":42}`,
    `{"idx":1,"ts":${now},"static":"short"}`,
    '\xff\xfe',
  ];
  it.each(badInits)('INIT plaintext %j is rejected', (pt) => {
    expectHandshakeError(() => consumeInit({ responder, message: forgeInit(pt), isKnownInitiator: () => true }));
  });
  it('INIT with non-UTF-8 plaintext is rejected', () => {
    expectHandshakeError(() => consumeInit({ responder, message: forgeInit(Buffer.from([0x7b, 0xff, 0x7d]).toString('latin1')) }));
  });
  it('INIT claiming a static key without the matching proof is rejected', () => {
    expectHandshakeError(
      () => consumeInit({ responder, message: forgeInit(`{"idx":1,"ts":${now},"static":"${vrPair.publicKey}"}`), isKnownInitiator: () => true }),
      /does not hold/,
    );
  });

  it.each(['', '[]', 'null', '{}', '{"idx":0}', '{"idx":4294967296}', '{"idx":"3"}', 'garbage'])('RESP plaintext %j is rejected', (pt) => {
    const init = tinyInit();
    expectHandshakeError(() => consumeResp(init.state, forgeResp(init.state, pt)));
  });
});
