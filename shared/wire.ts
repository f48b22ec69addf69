// Control-plane codec for the 24-byte TinyViNe header (docs/wire-format.md).
// The data plane lives in the native engine; this file is the TypeScript
// reference used for INIT/RESP/ERROR and for cross-checking the engine in tests.
import { createCipheriv, createHmac } from 'node:crypto';

export const WIRE_VERSION = 1;
export const HEADER_LEN = 24;
export const TAG_LEN = 16;
/** A datagram with more hops than this is dropped (`hop_limit`). */
export const MAX_HOPS = 3;

export const MsgType = {
  DATA: 1,
  KEEPALIVE: 2,
  INIT: 3,
  RESP: 4,
  ERROR: 5,
  QUEUE: 6,
} as const;
export type MsgType = (typeof MsgType)[keyof typeof MsgType];

/** Auth mode in flags bits 0–1: 0 none, 1 hmac, 2 aes-gcm, 3 chacha. */
export type AuthModeValue = 0 | 1 | 2 | 3 | 4;

export const ErrorCode = { UNKNOWN_SESSION: 1 } as const;
/** ERROR datagram: header ‖ code (1) ‖ receiver index that was not found (4). */
export const ERROR_LEN = HEADER_LEN + 5;

const U32_MAX = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;

export interface Header {
  type: MsgType;
  mode: AuthModeValue;
  hops: number;
  receiverIndex: number;
  senderId: number;
  networkId: number;
  counter: bigint;
}

export type WireErrorReason =
  | 'truncated'
  | 'bad_version'
  | 'bad_type'
  | 'bad_mode'
  | 'hop_limit'
  | 'bad_length'
  | 'bad_field';

export class WireError extends Error {
  constructor(
    readonly reason: WireErrorReason,
    message: string = reason,
  ) {
    super(message);
    this.name = 'WireError';
  }
}

function isU32(n: unknown): n is number {
  return typeof n === 'number' && Number.isInteger(n) && n >= 0 && n <= U32_MAX;
}

function isMsgType(n: number): n is MsgType {
  return Number.isInteger(n) && n >= MsgType.DATA && n <= MsgType.QUEUE;
}

/** Writes h at buf[off..off+24) (allocating when buf is omitted) and returns buf. */
export function encodeHeader(h: Header, buf: Buffer = Buffer.alloc(HEADER_LEN), off = 0): Buffer {
  if (!isMsgType(h.type)) throw new WireError('bad_type', `bad message type ${h.type}`);
  if (!(h.mode === 0 || h.mode === 1 || h.mode === 2 || h.mode === 3 || h.mode === 4)) throw new WireError('bad_mode', `bad auth mode ${h.mode}`);
  if (!Number.isInteger(h.hops) || h.hops < 0 || h.hops > MAX_HOPS) throw new WireError('hop_limit', `bad hops ${h.hops}`);
  if (!isU32(h.receiverIndex) || !isU32(h.senderId) || !isU32(h.networkId)) throw new WireError('bad_field', 'index/id out of u32 range');
  if (typeof h.counter !== 'bigint' || h.counter < 0n || h.counter > U64_MAX) throw new WireError('bad_field', 'counter out of u64 range');
  if (!Number.isInteger(off) || off < 0 || buf.length - off < HEADER_LEN) throw new WireError('truncated', 'no room for header');
  buf[off] = WIRE_VERSION;
  buf[off + 1] = h.type;
  buf[off + 2] = h.mode; // reserved flag bits are always written as 0
  buf[off + 3] = h.hops;
  buf.writeUInt32BE(h.receiverIndex, off + 4);
  buf.writeUInt32BE(h.senderId, off + 8);
  buf.writeUInt32BE(h.networkId, off + 12);
  buf.writeBigUInt64BE(h.counter, off + 16);
  return buf;
}

/** Parses the header at buf[off..]. Reserved flag bits are ignored (senders write 0). */
export function decodeHeader(buf: Buffer, off = 0): Header {
  if (!Buffer.isBuffer(buf) || !Number.isInteger(off) || off < 0 || buf.length - off < HEADER_LEN) {
    throw new WireError('truncated', 'datagram shorter than header');
  }
  if (buf[off] !== WIRE_VERSION) throw new WireError('bad_version', `bad version ${buf[off]}`);
  const type = buf[off + 1];
  if (!isMsgType(type)) throw new WireError('bad_type', `bad message type ${type}`);
  const hops = buf[off + 3];
  if (hops > MAX_HOPS) throw new WireError('hop_limit', `hops ${hops} > ${MAX_HOPS}`);
  return {
    type,
    mode: (buf[off + 2] & 7) as AuthModeValue,
    hops,
    receiverIndex: buf.readUInt32BE(off + 4),
    senderId: buf.readUInt32BE(off + 8),
    networkId: buf.readUInt32BE(off + 12),
    counter: buf.readBigUInt64BE(off + 16),
  };
}

/** ERROR datagram (unauthenticated): header receiver index is 0 because the peer is unknown to us. */
export function encodeError(code: number, receiverIndex: number, senderId: number): Buffer {
  if (!Number.isInteger(code) || code < 0 || code > 255) throw new WireError('bad_field', `bad error code ${code}`);
  if (!isU32(receiverIndex)) throw new WireError('bad_field', 'receiver index out of u32 range');
  const buf = Buffer.alloc(ERROR_LEN);
  encodeHeader({ type: MsgType.ERROR, mode: 0, hops: 0, receiverIndex: 0, senderId, networkId: 0, counter: 0n }, buf);
  buf[HEADER_LEN] = code;
  buf.writeUInt32BE(receiverIndex, HEADER_LEN + 1);
  return buf;
}

export function decodeError(buf: Buffer): { code: number; receiverIndex: number; senderId: number } {
  const h = decodeHeader(buf);
  if (h.type !== MsgType.ERROR) throw new WireError('bad_type', `expected ERROR, got type ${h.type}`);
  if (h.mode !== 0) throw new WireError('bad_mode', 'ERROR must have auth mode 0');
  if (buf.length < ERROR_LEN) throw new WireError('truncated', 'ERROR payload truncated');
  if (buf.length > ERROR_LEN) throw new WireError('bad_length', 'ERROR payload too long');
  return { code: buf[HEADER_LEN], receiverIndex: buf.readUInt32BE(HEADER_LEN + 1), senderId: h.senderId };
}

function headerBytes(header: Buffer | Header): Buffer {
  if (Buffer.isBuffer(header)) {
    if (header.length !== HEADER_LEN) throw new WireError('bad_length', 'header must be 24 bytes');
    return header;
  }
  return encodeHeader(header);
}

/** Test-only reference for auth mode `hmac`: first 16 bytes of HMAC-SHA256(key, header ‖ payload). */
export function sealHmacReference(key: Buffer, header: Buffer | Header, payload: Buffer): Buffer {
  return createHmac('sha256', key).update(headerBytes(header)).update(payload).digest().subarray(0, TAG_LEN);
}

/**
 * Test-only reference for auth modes `aes-gcm` (2) and `chacha` (3): returns ciphertext ‖ tag,
 * nonce = 4 zero bytes ‖ counter (taken from the header), AAD = the 24-byte header.
 */
export function sealAeadReference(mode: 2 | 3, key: Buffer, header: Buffer | Header, payload: Buffer): Buffer {
  const hdr = headerBytes(header);
  const nonce = Buffer.alloc(12);
  hdr.copy(nonce, 4, 16, 24);
  const c =
    mode === 2
      ? createCipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_LEN })
      : createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: TAG_LEN });
  c.setAAD(hdr, { plaintextLength: payload.length });
  return Buffer.concat([c.update(payload), c.final(), c.getAuthTag()]);
}
