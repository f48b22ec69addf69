import { createDecipheriv, createHmac, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  ERROR_LEN,
  ErrorCode,
  HEADER_LEN,
  MsgType,
  TAG_LEN,
  WIRE_VERSION,
  WireError,
  decodeError,
  decodeHeader,
  encodeError,
  encodeHeader,
  sealAeadReference,
  sealHmacReference,
  type Header,
} from '../../shared/wire.js';

const sample: Header = {
  type: MsgType.DATA,
  mode: 1,
  hops: 2,
  receiverIndex: 0xdeadbeef,
  senderId: 42,
  networkId: 7,
  counter: 0x0102030405060708n,
};

function reason(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(WireError);
    return (e as WireError).reason;
  }
  throw new Error('did not throw');
}

describe('wire header', () => {
  it('has the documented constants', () => {
    expect(WIRE_VERSION).toBe(1);
    expect(HEADER_LEN).toBe(24);
    expect(TAG_LEN).toBe(16);
    expect(MsgType).toEqual({ DATA: 1, KEEPALIVE: 2, INIT: 3, RESP: 4, ERROR: 5, QUEUE: 6 });
  });

  it('encodes the exact big-endian layout', () => {
    const b = encodeHeader(sample);
    expect(b.toString('hex')).toBe('01' + '01' + '01' + '02' + 'deadbeef' + '0000002a' + '00000007' + '0102030405060708');
  });

  it('round-trips, also at an offset in a larger buffer', () => {
    expect(decodeHeader(encodeHeader(sample))).toEqual(sample);
    const big = Buffer.alloc(100, 0xaa);
    encodeHeader(sample, big, 40);
    expect(big[39]).toBe(0xaa);
    expect(big[64]).toBe(0xaa);
    expect(decodeHeader(big, 40)).toEqual(sample);
    const max: Header = { type: MsgType.QUEUE, mode: 3, hops: 3, receiverIndex: 0xffffffff, senderId: 0xffffffff, networkId: 0xffffffff, counter: (1n << 64n) - 1n };
    expect(decodeHeader(encodeHeader(max))).toEqual(max);
  });

  it('rejects bad input with a reason', () => {
    const b = encodeHeader(sample);
    for (let n = 0; n < HEADER_LEN; n++) expect(reason(() => decodeHeader(b.subarray(0, n)))).toBe('truncated');
    expect(reason(() => decodeHeader(Buffer.from([2, ...b.subarray(1)])))).toBe('bad_version');
    expect(reason(() => decodeHeader(Buffer.from([0, ...b.subarray(1)])))).toBe('bad_version');
    for (const t of [0, 7, 255]) {
      const x = Buffer.from(b);
      x[1] = t;
      expect(reason(() => decodeHeader(x))).toBe('bad_type');
    }
    const h = Buffer.from(b);
    h[3] = 4;
    expect(reason(() => decodeHeader(h))).toBe('hop_limit');
    expect(reason(() => decodeHeader(b, 1))).toBe('truncated');
  });

  it('refuses to encode out-of-range fields', () => {
    expect(reason(() => encodeHeader({ ...sample, type: 9 as never }))).toBe('bad_type');
    expect(reason(() => encodeHeader({ ...sample, mode: 5 as never }))).toBe('bad_mode');
    expect(reason(() => encodeHeader({ ...sample, hops: 4 }))).toBe('hop_limit');
    expect(reason(() => encodeHeader({ ...sample, receiverIndex: 2 ** 32 }))).toBe('bad_field');
    expect(reason(() => encodeHeader({ ...sample, senderId: -1 }))).toBe('bad_field');
    expect(reason(() => encodeHeader({ ...sample, networkId: 1.5 }))).toBe('bad_field');
    expect(reason(() => encodeHeader({ ...sample, counter: 1n << 64n }))).toBe('bad_field');
    expect(reason(() => encodeHeader(sample, Buffer.alloc(30), 7))).toBe('truncated');
  });

  it('ignores reserved flag bits on decode', () => {
    const b = encodeHeader(sample);
    b[2] = 0xf9; // mode 1 in the low 3 bits, reserved bits set
    expect(decodeHeader(b).mode).toBe(1);
  });

  it('decodes random buffers without throwing anything but WireError', () => {
    for (let i = 0; i < 5000; i++) {
      const b = randomBytes(i % 40);
      if (i % 3 === 0 && b.length > 0) b[0] = 1;
      try {
        const h = decodeHeader(b);
        expect(decodeHeader(encodeHeader(h))).toEqual(h);
      } catch (e) {
        expect(e).toBeInstanceOf(WireError);
      }
    }
  });
});

describe('wire ERROR', () => {
  it('round-trips and has the documented layout', () => {
    const b = encodeError(ErrorCode.UNKNOWN_SESSION, 0x01020304, 99);
    expect(b.length).toBe(ERROR_LEN);
    const h = decodeHeader(b);
    expect(h).toMatchObject({ type: MsgType.ERROR, mode: 0, hops: 0, receiverIndex: 0, senderId: 99, networkId: 0, counter: 0n });
    expect(b.subarray(HEADER_LEN).toString('hex')).toBe('0101020304');
    expect(decodeError(b)).toEqual({ code: 1, receiverIndex: 0x01020304, senderId: 99 });
  });

  it('rejects malformed ERRORs', () => {
    const b = encodeError(1, 5, 6);
    for (let n = 0; n < ERROR_LEN; n++) expect(() => decodeError(b.subarray(0, n))).toThrow(WireError);
    expect(reason(() => decodeError(Buffer.concat([b, Buffer.alloc(1)])))).toBe('bad_length');
    expect(reason(() => decodeError(encodeHeader({ ...sample, mode: 0 })))).toBe('bad_type');
    const m = Buffer.from(b);
    m[2] = 1;
    expect(reason(() => decodeError(m))).toBe('bad_mode');
    expect(reason(() => encodeError(256, 1, 1))).toBe('bad_field');
  });
});

describe('reference sealing', () => {
  const key = randomBytes(32);
  const payload = randomBytes(100);

  it('hmac tag is HMAC-SHA256(key, header ‖ payload) truncated to 16 bytes', () => {
    const hdr = encodeHeader(sample);
    const full = createHmac('sha256', key).update(Buffer.concat([hdr, payload])).digest();
    const tag = sealHmacReference(key, hdr, payload);
    expect(tag.length).toBe(TAG_LEN);
    expect(tag.equals(full.subarray(0, 16))).toBe(true);
    expect(sealHmacReference(key, sample, payload).equals(tag)).toBe(true);
    expect(sealHmacReference(key, { ...sample, counter: sample.counter + 1n }, payload).equals(tag)).toBe(false);
    expect(() => sealHmacReference(key, hdr.subarray(0, 23), payload)).toThrow(WireError);
  });

  it('aead modes use nonce 0000 ‖ counter and the header as AAD', () => {
    for (const [mode, alg] of [
      [2, 'aes-256-gcm'],
      [3, 'chacha20-poly1305'],
    ] as const) {
      const h = { ...sample, mode };
      const hdr = encodeHeader(h);
      const sealed = sealAeadReference(mode, key, h, payload);
      expect(sealed.length).toBe(payload.length + TAG_LEN);
      const nonce = Buffer.concat([Buffer.alloc(4), hdr.subarray(16)]);
      const d = createDecipheriv(alg as 'chacha20-poly1305', key, nonce, { authTagLength: 16 });
      d.setAAD(hdr, { plaintextLength: payload.length });
      d.setAuthTag(sealed.subarray(payload.length));
      expect(Buffer.concat([d.update(sealed.subarray(0, payload.length)), d.final()]).equals(payload)).toBe(true);
    }
  });
});
