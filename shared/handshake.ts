// INIT/RESP handshake (docs/wire-format.md, "Handshake"). IK-like, node:crypto only.
//
// Key schedule (all DH = X25519, mix(ck, ikm) = HKDF-SHA256(ikm, salt = ck) -> ck' ‖ k):
//   ck0          = HKDF("tinyvine-v1")
//   ck1, k1      = mix(ck0, e_i ‖ s_r ‖ DH(e_i, s_r))
//   INIT         = hdr ‖ e_i ‖ AEAD(k1, JSON{idx, ts, static?, ...}, aad = hdr ‖ e_i) ‖ proof
//   ck2, k2      = mix(ck1, s_i ‖ DH(s_i, s_r))   when the initiator has a static key
//                = mix(ck1, "")                    otherwise
//   proof        = HMAC-SHA256(k2, hdr ‖ e_i ‖ ciphertext)[:16]
//   ck3, k3      = mix(ck2, SHA256(INIT) ‖ e_r ‖ DH(e_r, e_i) ‖ [DH(e_r, s_i)])
//   RESP         = hdr ‖ e_r ‖ AEAD(k3, JSON{idx, ...}, aad = hdr ‖ e_r)
//   i2r ‖ r2i    = HKDF(ck3, info "tinyvine-v1 data", 64)
// The proof trailer is always present so the INIT layout never depends on the
// (encrypted) initiator type; without a static key it merely repeats the AEAD's guarantee.
// Hashing the whole INIT into ck3 binds the RESP (and the data keys) to that exact INIT.
import {
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  hkdfSync,
  timingSafeEqual,
  type KeyObject,
} from 'node:crypto';
import { HEADER_LEN, MsgType, TAG_LEN, decodeHeader, encodeHeader, type Header } from './wire.js';

const LABEL = 'tinyvine-v1';
const KEY_LEN = 32;
const PROOF_LEN = 16;
/** Largest INIT/RESP we build or accept: fits an unfragmented datagram on a 1280-byte IPv6 path. */
export const MAX_HANDSHAKE_LEN = 1200;
const MIN_INIT_LEN = HEADER_LEN + KEY_LEN + TAG_LEN + PROOF_LEN;
const MIN_RESP_LEN = HEADER_LEN + KEY_LEN + TAG_LEN;
const U32_MAX = 0xffff_ffff;
const ZERO_NONCE = Buffer.alloc(12); // every handshake key encrypts exactly one message
const RESERVED_INIT = ['idx', 'ts', 'static'];
const RESERVED_RESP = ['idx'];

// DER framing of raw X25519 keys (RFC 8410), so raw 32-byte keys can become KeyObjects.
const SPKI_PREFIX = Buffer.from('302a300506032b656e032100', 'hex');
const PKCS8_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

const CK0 = Buffer.from(hkdfSync('sha256', LABEL, '', `${LABEL} ck0`, KEY_LEN));

export class HandshakeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'HandshakeError';
  }
}

/** A router's long-term X25519 key pair. */
export interface StaticKey {
  readonly privateKey: KeyObject;
  readonly publicRaw: Buffer;
}

/** Opaque initiator state between createInit and consumeResp. */
export interface InitiatorState {
  readonly index: number;
  readonly ephemeral: KeyObject;
  readonly ephemeralPub: Buffer;
  readonly initiatorStatic: StaticKey | null;
  readonly ck2: Buffer;
  readonly initHash: Buffer;
  done: boolean;
}

// ---------- keys ----------

function rawPublic(k: KeyObject): Buffer {
  return k.export({ format: 'der', type: 'spki' }).subarray(SPKI_PREFIX.length);
}

function publicKeyObject(raw: Buffer): KeyObject {
  return createPublicKey({ key: Buffer.concat([SPKI_PREFIX, raw]), format: 'der', type: 'spki' });
}

// Strict: Buffer.from(…, 'base64') silently skips junk, which would hide typos in config files.
function decodeKey32(what: string, b64: unknown): Buffer {
  if (typeof b64 !== 'string') throw new HandshakeError(`${what} must be 32 bytes of base64, got ${typeof b64}`);
  const s = b64.trim();
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(s) || s.length % 4 !== 0) {
    throw new HandshakeError(`${what} must be 32 bytes of base64, got non-base64 text of length ${s.length}`);
  }
  const raw = Buffer.from(s, 'base64');
  if (raw.length !== KEY_LEN) throw new HandshakeError(`${what} must be 32 bytes of base64, got ${raw.length} bytes`);
  return raw;
}

export function generateKeyPair(): { publicKey: string; privateKey: string } {
  const { publicKey, privateKey } = generateKeyPairSync('x25519');
  const priv = privateKey.export({ format: 'der', type: 'pkcs8' }).subarray(PKCS8_PREFIX.length);
  return { publicKey: rawPublic(publicKey).toString('base64'), privateKey: priv.toString('base64') };
}

export function loadPrivateKey(b64: string): StaticKey {
  const raw = decodeKey32('private key', b64);
  try {
    const privateKey = createPrivateKey({ key: Buffer.concat([PKCS8_PREFIX, raw]), format: 'der', type: 'pkcs8' });
    return { privateKey, publicRaw: rawPublic(createPublicKey(privateKey)) };
  } catch {
    throw new HandshakeError('private key is not a valid X25519 key');
  }
}

export function loadPublicKey(b64: string): Buffer {
  return decodeKey32('public key', b64);
}

export function publicKeyOf(k: StaticKey): string {
  return k.publicRaw.toString('base64');
}

/** X25519 of our static key with a peer's static public key: the same secret on both sides. */
export function staticSharedSecret(k: StaticKey, peerPublic: Buffer): Buffer {
  return dh(k.privateKey, peerPublic);
}

// ---------- primitives ----------

function dh(priv: KeyObject, pubRaw: Buffer): Buffer {
  let out: Buffer;
  try {
    out = diffieHellman({ privateKey: priv, publicKey: publicKeyObject(pubRaw) });
  } catch {
    throw new HandshakeError('bad public key');
  }
  // Low-order points give an all-zero secret (OpenSSL usually refuses already).
  if (out.every((b) => b === 0)) throw new HandshakeError('bad public key');
  return out;
}

function mix(ck: Buffer, ikm: Buffer): [Buffer, Buffer] {
  const out = Buffer.from(hkdfSync('sha256', ikm, ck, `${LABEL} mix`, 2 * KEY_LEN));
  return [out.subarray(0, KEY_LEN), out.subarray(KEY_LEN)];
}

function seal(key: Buffer, plaintext: Buffer, aad: Buffer): Buffer {
  const c = createCipheriv('chacha20-poly1305', key, ZERO_NONCE, { authTagLength: TAG_LEN });
  c.setAAD(aad, { plaintextLength: plaintext.length });
  return Buffer.concat([c.update(plaintext), c.final(), c.getAuthTag()]);
}

function open(key: Buffer, sealed: Buffer, aad: Buffer, what: string): Buffer {
  const body = sealed.subarray(0, sealed.length - TAG_LEN);
  try {
    const d = createDecipheriv('chacha20-poly1305', key, ZERO_NONCE, { authTagLength: TAG_LEN });
    d.setAAD(aad, { plaintextLength: body.length });
    d.setAuthTag(sealed.subarray(sealed.length - TAG_LEN));
    return Buffer.concat([d.update(body), d.final()]);
  } catch {
    throw new HandshakeError(`${what}: decryption failed (wrong key or tampered)`);
  }
}

function proofTag(k2: Buffer, headerAndCiphertext: Buffer): Buffer {
  return createHmac('sha256', k2).update(headerAndCiphertext).digest().subarray(0, PROOF_LEN);
}

function sha256(b: Buffer): Buffer {
  return createHash('sha256').update(b).digest();
}

function dataKeys(ck3: Buffer): { i2r: Buffer; r2i: Buffer } {
  const out = Buffer.from(hkdfSync('sha256', ck3, '', `${LABEL} data`, 2 * KEY_LEN));
  return { i2r: out.subarray(0, KEY_LEN), r2i: out.subarray(KEY_LEN) };
}

// ---------- message helpers ----------

function isIndex(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 1 && n <= U32_MAX;
}

function checkU32(what: string, n: unknown): void {
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 0 || n > U32_MAX) throw new HandshakeError(`${what} must be a u32`);
}

function encodePayload(fields: Record<string, unknown>, payload: Record<string, unknown>, reserved: string[]): Buffer {
  if (typeof payload !== 'object' || payload === null || Array.isArray(payload)) throw new HandshakeError('payload must be an object');
  for (const k of reserved) if (Object.hasOwn(payload, k)) throw new HandshakeError(`payload may not contain reserved key "${k}"`);
  try {
    return Buffer.from(JSON.stringify({ ...payload, ...fields }), 'utf8');
  } catch {
    throw new HandshakeError('payload is not JSON-serializable');
  }
}

function decodePayload(plain: Buffer, what: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plain));
  } catch {
    throw new HandshakeError(`${what}: payload is not UTF-8 JSON`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new HandshakeError(`${what}: payload is not a JSON object`);
  return v as Record<string, unknown>;
}

function without(obj: Record<string, unknown>, keys: string[]): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(obj)) if (!keys.includes(k)) Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  return out;
}

function parseHeader(message: unknown, type: MsgType, what: string): Header {
  if (!Buffer.isBuffer(message)) throw new HandshakeError(`${what}: not a Buffer`);
  if (message.length > MAX_HANDSHAKE_LEN) throw new HandshakeError(`${what}: too long`);
  let h: Header;
  try {
    h = decodeHeader(message);
  } catch (e) {
    throw new HandshakeError(`${what}: ${(e as Error).message}`);
  }
  if (h.type !== type) throw new HandshakeError(`${what}: wrong message type ${h.type}`);
  // All of these are fixed for handshake messages; the AEAD also covers them as AAD.
  if (h.mode !== 0 || h.hops !== 0 || h.networkId !== 0 || h.counter !== 0n || (message[2] & ~3) !== 0) {
    throw new HandshakeError(`${what}: bad header field`);
  }
  return h;
}

function header(type: MsgType, receiverIndex: number, senderId: number): Buffer {
  return encodeHeader({ type, mode: 0, hops: 0, receiverIndex, senderId, networkId: 0, counter: 0n });
}

// Turns anything unexpected (a crypto/runtime error on odd input) into a HandshakeError.
function guarded<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof HandshakeError) throw e;
    throw new HandshakeError(`${what}: ${e instanceof Error ? e.message : 'failed'}`);
  }
}

// ---------- initiator ----------

export function createInit(o: {
  responderPublic: Buffer;
  initiatorStatic?: StaticKey;
  index: number;
  senderId: number;
  payload: Record<string, unknown>;
}): { message: Buffer; state: InitiatorState } {
  return guarded('createInit', () => {
    if (!Buffer.isBuffer(o.responderPublic) || o.responderPublic.length !== KEY_LEN) throw new HandshakeError('responder public key must be 32 bytes');
    if (!isIndex(o.index)) throw new HandshakeError('index must be in 1..2^32-1');
    checkU32('senderId', o.senderId);
    const s = o.initiatorStatic ?? null;

    const { privateKey: ephemeral, publicKey } = generateKeyPairSync('x25519');
    const ephemeralPub = rawPublic(publicKey);
    const hdr = header(MsgType.INIT, 0, o.senderId);
    const [ck1, k1] = mix(CK0, Buffer.concat([ephemeralPub, o.responderPublic, dh(ephemeral, o.responderPublic)]));

    const fields: Record<string, unknown> = { idx: o.index, ts: Date.now() };
    if (s) fields.static = s.publicRaw.toString('base64');
    const body = Buffer.concat([hdr, ephemeralPub, seal(k1, encodePayload(fields, o.payload, RESERVED_INIT), Buffer.concat([hdr, ephemeralPub]))]);

    const [ck2, k2] = mix(ck1, s ? Buffer.concat([s.publicRaw, dh(s.privateKey, o.responderPublic)]) : Buffer.alloc(0));
    const message = Buffer.concat([body, proofTag(k2, body)]);
    if (message.length > MAX_HANDSHAKE_LEN) throw new HandshakeError(`INIT would be ${message.length} bytes (max ${MAX_HANDSHAKE_LEN})`);

    const state: InitiatorState = { index: o.index, ephemeral, ephemeralPub, initiatorStatic: s, ck2, initHash: sha256(message), done: false };
    return { message, state };
  });
}

export function consumeResp(
  state: InitiatorState,
  message: Buffer,
): { txKey: Buffer; rxKey: Buffer; remoteIndex: number; senderId: number; payload: Record<string, unknown> } {
  return guarded('RESP', () => {
    if (state.done) throw new HandshakeError('RESP: handshake already completed');
    const h = parseHeader(message, MsgType.RESP, 'RESP');
    if (message.length < MIN_RESP_LEN) throw new HandshakeError('RESP: truncated');
    if (h.receiverIndex !== state.index) throw new HandshakeError('RESP: not for this handshake (receiver index)');

    const er = message.subarray(HEADER_LEN, HEADER_LEN + KEY_LEN);
    const parts = [state.initHash, er, dh(state.ephemeral, er)];
    if (state.initiatorStatic) parts.push(dh(state.initiatorStatic.privateKey, er));
    const [ck3, k3] = mix(state.ck2, Buffer.concat(parts));

    const plain = open(k3, message.subarray(HEADER_LEN + KEY_LEN), message.subarray(0, HEADER_LEN + KEY_LEN), 'RESP');
    const obj = decodePayload(plain, 'RESP');
    if (!isIndex(obj.idx)) throw new HandshakeError('RESP: missing or bad idx');

    const { i2r, r2i } = dataKeys(ck3);
    state.done = true;
    return { txKey: i2r, rxKey: r2i, remoteIndex: obj.idx, senderId: h.senderId, payload: without(obj, RESERVED_RESP) };
  });
}

// ---------- responder ----------

/**
 * Remembers recently seen INIT ephemerals. An INIT is admitted only if its ts is within
 * windowMs of now and its e_i was not seen while that ts was still acceptable.
 */
export class InitReplayGuard {
  // base64(e_i) -> ts, in insertion order.
  private readonly seen = new Map<string, number>();
  // Evicting an entry early (cap reached) would reopen its replay, so afterwards refuse every ts <= the evicted one.
  private floorTs = -Infinity;

  constructor(
    readonly windowMs = 120_000,
    readonly maxEntries = 100_000,
  ) {}

  /** Throws HandshakeError if the INIT is stale or replayed; otherwise records it. */
  check(ephemeral: Buffer, ts: number, now = Date.now()): void {
    if (!Number.isFinite(ts) || Math.abs(now - ts) > this.windowMs) throw new HandshakeError('INIT: stale timestamp');
    if (ts <= this.floorTs) throw new HandshakeError('INIT: timestamp too old (replay guard full)');
    const key = ephemeral.toString('base64');
    this.prune(now);
    if (this.seen.has(key)) throw new HandshakeError('INIT: replayed');
    while (this.seen.size >= this.maxEntries) {
      const [oldKey, oldTs] = this.seen.entries().next().value as [string, number];
      this.seen.delete(oldKey);
      this.floorTs = Math.max(this.floorTs, oldTs);
    }
    this.seen.set(key, ts);
  }

  get size(): number {
    return this.seen.size;
  }

  // An entry whose ts is out of the window is rejected by the ts check alone, so it can go.
  // Scans from the oldest insertion and stops at the first live one: cheap, and the cap bounds the rest.
  private prune(now: number): void {
    for (const [k, ts] of this.seen) {
      if (now - ts <= this.windowMs) break;
      this.seen.delete(k);
    }
  }
}

export function consumeInit(o: {
  responder: StaticKey;
  message: Buffer;
  isKnownInitiator?: (staticPubB64: string) => boolean;
  guard?: InitReplayGuard;
}): {
  initiatorStatic: string | null;
  remoteIndex: number;
  senderId: number;
  payload: Record<string, unknown>;
  respond(r: { index: number; senderId: number; payload: Record<string, unknown> }): { message: Buffer; txKey: Buffer; rxKey: Buffer };
} {
  const parsed = guarded('INIT', () => {
    const message = o.message;
    const h = parseHeader(message, MsgType.INIT, 'INIT');
    if (message.length < MIN_INIT_LEN) throw new HandshakeError('INIT: truncated');
    if (h.receiverIndex !== 0) throw new HandshakeError('INIT: receiver index must be 0');

    const sr = o.responder;
    const ei = message.subarray(HEADER_LEN, HEADER_LEN + KEY_LEN);
    const body = message.subarray(0, message.length - PROOF_LEN);
    const [ck1, k1] = mix(CK0, Buffer.concat([ei, sr.publicRaw, dh(sr.privateKey, ei)]));
    const plain = open(k1, body.subarray(HEADER_LEN + KEY_LEN), message.subarray(0, HEADER_LEN + KEY_LEN), 'INIT');
    const obj = decodePayload(plain, 'INIT');
    if (!isIndex(obj.idx)) throw new HandshakeError('INIT: missing or bad idx');
    if (typeof obj.ts !== 'number' || !Number.isFinite(obj.ts)) throw new HandshakeError('INIT: missing or bad ts');

    let si: Buffer | null = null;
    if (obj.static !== undefined) {
      if (typeof obj.static !== 'string') throw new HandshakeError('INIT: bad static key');
      try {
        si = decodeKey32('static key', obj.static);
      } catch {
        throw new HandshakeError('INIT: bad static key');
      }
    }
    const [ck2, k2] = mix(ck1, si ? Buffer.concat([si, dh(sr.privateKey, si)]) : Buffer.alloc(0));
    if (!timingSafeEqual(proofTag(k2, body), message.subarray(body.length))) {
      throw new HandshakeError(si ? 'INIT: initiator does not hold its static key' : 'INIT: bad proof tag');
    }
    return { h, ei, si, ck2, obj, initHash: sha256(message) };
  });

  const { h, ei, si, ck2, obj, initHash } = parsed;
  const staticB64 = si ? si.toString('base64') : null;
  // Fail closed: a static initiator is only accepted when the caller says who is allowed.
  if (staticB64 !== null && !(o.isKnownInitiator?.(staticB64) ?? false)) throw new HandshakeError('INIT: unknown initiator static key');
  // Recorded only after authentication so garbage cannot fill the guard.
  o.guard?.check(ei, obj.ts as number);

  let responded = false;
  return {
    initiatorStatic: staticB64,
    remoteIndex: obj.idx as number,
    senderId: h.senderId,
    payload: without(obj, RESERVED_INIT),
    respond: (r) =>
      guarded('respond', () => {
        // One INIT yields one session; a second RESP would need a second ephemeral and give different keys.
        if (responded) throw new HandshakeError('respond: already responded to this INIT');
        if (!isIndex(r.index)) throw new HandshakeError('index must be in 1..2^32-1');
        checkU32('senderId', r.senderId);
        const { privateKey: eph, publicKey } = generateKeyPairSync('x25519');
        const er = rawPublic(publicKey);
        const parts = [initHash, er, dh(eph, ei)];
        if (si) parts.push(dh(eph, si));
        const [ck3, k3] = mix(ck2, Buffer.concat(parts));
        const hdr = header(MsgType.RESP, obj.idx as number, r.senderId);
        const aad = Buffer.concat([hdr, er]);
        const message = Buffer.concat([aad, seal(k3, encodePayload({ idx: r.index }, r.payload, RESERVED_RESP), aad)]);
        if (message.length > MAX_HANDSHAKE_LEN) throw new HandshakeError(`RESP would be ${message.length} bytes (max ${MAX_HANDSHAKE_LEN})`);
        responded = true;
        const { i2r, r2i } = dataKeys(ck3);
        return { message, txKey: r2i, rxKey: i2r };
      }),
  };
}
