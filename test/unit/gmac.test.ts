// AES-256-GMAC tags of the native engine against Node's aes-256-gcm (data as associated
// data, nothing encrypted), through every GHASH implementation: ours with VPCLMULQDQ
// (four blocks per instruction with AVX-512, two with AVX2; one reduction per segment of 128
// blocks) and OpenSSL's GCM core (the fallback). Lengths cover every tail size, segment boundaries
// (2032/2048 bytes: 127/128 blocks plus the length block) and multi-segment inputs.
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { gmacImpl, gmacNsPerTag, gmacTagForTest } from '../../shared/packet-engine.js';

function referenceTag(key: Buffer, nonce: Buffer, data: Buffer): Buffer {
  const c = createCipheriv('aes-256-gcm', key, nonce) as ReturnType<typeof createCipheriv> & {
    setAAD(b: Buffer): void;
    getAuthTag(): Buffer;
  };
  c.setAAD(data);
  c.final();
  return c.getAuthTag();
}

const LENGTHS = [
  ...Array.from({ length: 300 }, (_, i) => i),
  1024, 1443, 1444, 1445, 1472, 2015, 2016, 2017, 2031, 2032, 2033, 2047, 2048, 2049, 2064, 4095, 4096, 4097, 4112, 9000, 65_535,
];

function runs(width: 256 | 512): boolean {
  try {
    gmacTagForTest(width, Buffer.alloc(32), Buffer.alloc(12), Buffer.alloc(0));
    return true;
  } catch {
    return false;
  }
}
const has = { 256: runs(256), 512: runs(512) };
for (const w of [512, 256] as const) {
  if (!has[w]) console.log(`gmac.test: the ${w}-bit VPCLMULQDQ GHASH is skipped: this CPU lacks it; the other paths are tested`);
}

describe('GMAC tags', () => {
  for (const [name, width] of [
    ['OpenSSL GCM core', 0],
    ['wide GHASH (AVX-512 VPCLMULQDQ)', 512],
    ['wide GHASH (AVX2 VPCLMULQDQ)', 256],
  ] as const) {
    it.skipIf(width !== 0 && !has[width])(`${name}: equal to aes-256-gcm for ${LENGTHS.length} lengths, fresh key and nonce each`, () => {
      for (const len of LENGTHS) {
        const key = randomBytes(32);
        const nonce = randomBytes(12);
        const data = randomBytes(len);
        expect(gmacTagForTest(width, key, nonce, data).toString('hex'), `length ${len}`).toBe(referenceTag(key, nonce, data).toString('hex'));
      }
    });
  }

  for (const width of [512, 256] as const) {
    it.skipIf(!has[width])(`${width}-bit GHASH: one changed bit or byte anywhere changes the tag`, () => {
      const key = randomBytes(32);
      const nonce = randomBytes(12);
      const data = randomBytes(1444);
      const tag = gmacTagForTest(width, key, nonce, data).toString('hex');
      for (const pos of [0, 15, 16, 31, 32, 63, 64, 700, 1427, 1428, 1443]) {
        const d = Buffer.from(data);
        d[pos]! ^= 1 << pos % 8;
        expect(gmacTagForTest(width, key, nonce, d).toString('hex'), `bit flipped at byte ${pos}`).not.toBe(tag);
      }
      // the length is authenticated: a zero byte appended or removed changes the tag
      expect(gmacTagForTest(width, key, nonce, Buffer.concat([data, Buffer.alloc(1)])).toString('hex')).not.toBe(tag);
      const z = Buffer.concat([data.subarray(0, 1443), Buffer.alloc(1)]);
      expect(gmacTagForTest(width, key, nonce, z).toString('hex')).not.toBe(gmacTagForTest(width, key, nonce, z.subarray(0, 1443)).toString('hex'));
      const other = Buffer.from(nonce);
      other[11]! ^= 1;
      expect(gmacTagForTest(width, key, other, data).toString('hex')).not.toBe(tag);
    });
  }

  it('the benchmark hook times every GHASH this CPU runs and says null for the others', () => {
    for (const width of [0, 256, 512] as const) {
      const ns = gmacNsPerTag(width, 1456, 50, 2);
      if (width === 0 || has[width]) {
        expect(ns, `width ${width}`).toBeGreaterThan(0);
        expect(ns!, `width ${width}`).toBeLessThan(1e6); // a tag is µs at most, not ms
      } else {
        expect(ns, `width ${width}`).toBeNull();
      }
    }
    expect(() => gmacNsPerTag(0, 70_000)).toThrow(/len 0\.\.65536/);
  });

  it('the engine reports which GHASH its gmac mode uses', () => {
    const env = process.env.TINYVINE_GMAC;
    const best = env === 'openssl' ? 0 : has[512] && env !== 'avx2' ? 512 : has[256] ? 256 : 0;
    expect(gmacImpl()).toBe({ 512: 'avx512-vpclmulqdq', 256: 'avx2-vpclmulqdq', 0: 'openssl' }[best]);
  });
});
