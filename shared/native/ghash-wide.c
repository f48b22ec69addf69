/* GHASH with VPCLMULQDQ, 512- or 256-bit (see ghash-wide.h for why it is ours).
 *
 * Math: GHASH is computed as POLYVAL (RFC 8452, appendix A): with every 16-byte block
 * byte-reversed and the key H replaced by mulX(reverse(H)), GHASH's bit-reflected field
 * becomes the natural little-endian one that carry-less multiply works in, and
 * dot(a, b) = a * b * x^-128 mod P, P = x^128 + x^127 + x^126 + x^121 + 1.
 * With Kp_j = K^j * x^(-128 (j-1)) (j-fold dot of K), hashing n blocks is
 *   S = reduce( sum_i X_i * Kp_(n-i+1) )
 * so products are summed unreduced and reduced once (Montgomery, by x^128) per segment of
 * at most TV_GHASH_POWERS blocks; the state of one segment is added to the first block of
 * the next. Only the two segment loops use AVX-512 / AVX2 (each its own target attribute;
 * the shared helpers use only PCLMUL and SSSE3/SSE4.1 so that they are safe on either CPU);
 * the caller picks a width at most tv_ghash_wide_width(). */
#include "ghash-wide.h"

#include <string.h>

#if !defined(__x86_64__)
/* Other architectures (arm64 VMs) use OpenSSL's GCM core, which has its own PMULL GHASH. */
int tv_ghash_wide_width(void) { return 0; }
void tv_ghash_wide_init(tv_ghash_key *k, const uint8_t h[16], int width) {
  (void)h, (void)width;
  memset(k, 0, sizeof *k);
}
void tv_ghash_wide_aad(const tv_ghash_key *k, const uint8_t *aad, size_t len, uint8_t out[16]) {
  (void)k, (void)aad, (void)len;
  memset(out, 0, 16);
}
#else
#include <immintrin.h>

/* TV_BASE code runs on any CPU with either loop; it is inlined into both. */
#define TV_BASE __attribute__((target("pclmul,ssse3,sse4.1")))
#define TV_W512 __attribute__((target("avx512f,avx512bw,vpclmulqdq,pclmul,ssse3,sse4.1")))
#define TV_W256 __attribute__((target("avx2,vpclmulqdq,pclmul,ssse3,sse4.1")))
#define NPOW TV_GHASH_POWERS

int tv_ghash_wide_width(void) {
  /* libgcc's checks include the OS having enabled the AVX / AVX-512 register state (XCR0). */
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("vpclmulqdq") || !__builtin_cpu_supports("pclmul")) return 0;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")) return 512;
  return __builtin_cpu_supports("avx2") ? 256 : 0;
}

/* Byte order of a GHASH block <-> POLYVAL element (reverse the 16 bytes). */
TV_BASE static inline __m128i rev128(__m128i x) {
  return _mm_shuffle_epi8(x, _mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
}

/* [hi:lo] * x^-128 mod P: two folds of the low 64 bits by x^64 * (x^63 + x^62 + x^57)
 * (the constant 0xc2 << 56) plus the x^128 term (the swap). */
TV_BASE static inline __m128i reduce(__m128i hi, __m128i lo) {
  const __m128i c = _mm_set_epi64x(0, (long long)0xC200000000000000ULL);
  __m128i t = _mm_clmulepi64_si128(lo, c, 0x00);
  lo = _mm_xor_si128(_mm_shuffle_epi32(lo, 0x4e), t);
  t = _mm_clmulepi64_si128(lo, c, 0x00);
  lo = _mm_xor_si128(_mm_shuffle_epi32(lo, 0x4e), t);
  return _mm_xor_si128(hi, lo);
}

/* Unreduced 256-bit a * b as (hi, lo, mid); mid is split over both at the end. */
TV_BASE static inline void mul128(__m128i a, __m128i b, __m128i *lo, __m128i *hi, __m128i *mid) {
  *lo = _mm_xor_si128(*lo, _mm_clmulepi64_si128(a, b, 0x00));
  *hi = _mm_xor_si128(*hi, _mm_clmulepi64_si128(a, b, 0x11));
  *mid = _mm_xor_si128(*mid, _mm_xor_si128(_mm_clmulepi64_si128(a, b, 0x01), _mm_clmulepi64_si128(a, b, 0x10)));
}

TV_BASE static inline __m128i finish(__m128i lo, __m128i hi, __m128i mid) {
  lo = _mm_xor_si128(lo, _mm_slli_si128(mid, 8));
  hi = _mm_xor_si128(hi, _mm_srli_si128(mid, 8));
  return reduce(hi, lo);
}

TV_BASE static inline __m128i dot(__m128i a, __m128i b) {
  __m128i lo = _mm_setzero_si128(), hi = lo, mid = lo;
  mul128(a, b, &lo, &hi, &mid);
  return finish(lo, hi, mid);
}

TV_BASE void tv_ghash_wide_init(tv_ghash_key *k, const uint8_t h[16], int width) {
  /* K = mulX(reverse(H)): shift left by one, folding x^128 back as P's low terms. */
  __m128i r = rev128(_mm_loadu_si128((const __m128i *)h));
  uint64_t q[2];
  _mm_storeu_si128((__m128i *)q, r);
  uint64_t carry = q[1] >> 63;
  q[1] = (q[1] << 1) | (q[0] >> 63);
  q[0] <<= 1;
  if (carry) {
    q[1] ^= 0xC200000000000000ULL;
    q[0] ^= 1;
  }
  __m128i key = _mm_loadu_si128((const __m128i *)q), p = key;
  for (int j = 1; j <= NPOW; j++) {
    _mm_store_si128((__m128i *)k->pow[NPOW - j], p);
    p = dot(p, key);
  }
  memset(k->pow[NPOW], 0, 3 * 16);
  for (int j = 0; j < NPOW + 3; j++) {
    __m128i v = _mm_load_si128((const __m128i *)k->pow[j]);
    _mm_store_si128((__m128i *)k->kar[j], _mm_xor_si128(v, _mm_shuffle_epi32(v, 0x4e)));
  }
  k->width = width;
  memset(q, 0, sizeof q);
}

/* The end of a segment: the length block (if this segment is the last), with power 1, added
 * to the unreduced sum (l, hh, m); then the one reduction. The length block is also the
 * segment's first block, carrying the state `s`, when there is no data. */
TV_BASE static inline __m128i segment_end(const tv_ghash_key *k, __m128i s, size_t nd, const __m128i *len_blk,
                                          __m128i l, __m128i hh, __m128i m) {
  if (len_blk) {
    __m128i b = nd == 0 ? _mm_xor_si128(*len_blk, s) : *len_blk;
    mul128(b, _mm_load_si128((const __m128i *)k->pow[NPOW - 1]), &l, &hh, &m);
  }
  return finish(l, hh, m);
}

TV_W512 static inline __m128i fold4(__m512i v) {
  __m256i x = _mm256_xor_si256(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64(v, 1));
  return _mm_xor_si128(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
}

/* One segment: `bytes` of data (whole blocks unless it is the last segment, where the
 * tail is zero-padded), then the length block if `len_blk` is non-NULL; at most NPOW
 * blocks in all. `s` is the state so far, added to the segment's first block. */
TV_W512 static __m128i segment512(const tv_ghash_key *k, __m128i s, const uint8_t *p, size_t bytes,
                               const __m128i *len_blk) {
  size_t nd = (bytes + 15) / 16;
  size_t n = nd + (len_blk ? 1 : 0);
  const uint8_t(*pw)[16] = k->pow + (NPOW - n);
  const __m512i rev = _mm512_broadcast_i32x4(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  __m512i lo = _mm512_setzero_si512(), hi = lo, mid = lo;
  __m512i first = _mm512_zextsi128_si512(s);
  for (size_t i = 0; i < nd; i += 4) {
    size_t rem = bytes - i * 16;
    /* a masked load neither reads nor faults past the end; the lanes stay zero */
    __m512i x = rem >= 64 ? _mm512_loadu_si512(p + i * 16) : _mm512_maskz_loadu_epi8((1ULL << rem) - 1, p + i * 16);
    x = _mm512_xor_si512(_mm512_shuffle_epi8(x, rev), first);
    first = _mm512_setzero_si512();
    __m512i h = _mm512_loadu_si512(pw + i); /* 16-byte aligned only */
    lo = _mm512_xor_si512(lo, _mm512_clmulepi64_epi128(x, h, 0x00));
    hi = _mm512_xor_si512(hi, _mm512_clmulepi64_epi128(x, h, 0x11));
    mid = _mm512_xor_si512(mid, _mm512_xor_si512(_mm512_clmulepi64_epi128(x, h, 0x01), _mm512_clmulepi64_epi128(x, h, 0x10)));
  }
  return segment_end(k, s, nd, len_blk, fold4(lo), fold4(hi), fold4(mid));
}

TV_W256 static inline __m128i fold2(__m256i v) {
  return _mm_xor_si128(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
}

/* segment512 with two blocks per instruction, for CPUs with VPCLMULQDQ but no AVX-512 (AMD
 * Zen 3). Karatsuba: three multiplies per block, not four, the middle one by the precomputed
 * kar[] (measured on Zen 3, GHASH of 1444 bytes: 119 ns, vs 140 ns with four multiplies; the
 * whole tag of a 1456-byte datagram 141-146 ns, vs 241-253 ns through OpenSSL 3.0's GCM
 * core). AVX2 has no byte-masked load, so the last partial pair is copied into a zeroed
 * buffer. */
TV_W256 static __m128i segment256(const tv_ghash_key *k, __m128i s, const uint8_t *p, size_t bytes,
                                  const __m128i *len_blk) {
  size_t nd = (bytes + 15) / 16;
  size_t n = nd + (len_blk ? 1 : 0);
  const uint8_t(*pw)[16] = k->pow + (NPOW - n);
  const uint8_t(*kar)[16] = k->kar + (NPOW - n);
  const __m256i rev = _mm256_broadcastsi128_si256(_mm_set_epi8(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
  __m256i lo = _mm256_setzero_si256(), hi = lo, mid = lo;
  __m256i first = _mm256_zextsi128_si256(s);
  for (size_t i = 0; i < nd; i += 2) {
    size_t rem = bytes - i * 16;
    __m256i x;
    if (rem >= 32) {
      x = _mm256_loadu_si256((const __m256i *)(p + i * 16));
    } else {
      uint8_t tail[32] __attribute__((aligned(32))) = {0};
      memcpy(tail, p + i * 16, rem);
      x = _mm256_load_si256((const __m256i *)tail);
    }
    x = _mm256_xor_si256(_mm256_shuffle_epi8(x, rev), first);
    first = _mm256_setzero_si256();
    __m256i h = _mm256_loadu_si256((const __m256i *)(pw + i)); /* 16-byte aligned only */
    lo = _mm256_xor_si256(lo, _mm256_clmulepi64_epi128(x, h, 0x00));
    hi = _mm256_xor_si256(hi, _mm256_clmulepi64_epi128(x, h, 0x11));
    /* (x_lo ^ x_hi) * (h_lo ^ h_hi) = lo ^ hi ^ mid, so mid is recovered once at the end */
    __m256i xs = _mm256_xor_si256(x, _mm256_shuffle_epi32(x, 0x4e));
    mid = _mm256_xor_si256(mid, _mm256_clmulepi64_epi128(xs, _mm256_loadu_si256((const __m256i *)(kar + i)), 0x00));
  }
  mid = _mm256_xor_si256(mid, _mm256_xor_si256(lo, hi));
  return segment_end(k, s, nd, len_blk, fold2(lo), fold2(hi), fold2(mid));
}

/* Segment of the key's width; both loops hash the same blocks with the same powers. */
TV_BASE static __m128i segment(const tv_ghash_key *k, __m128i s, const uint8_t *p, size_t bytes,
                               const __m128i *len_blk) {
  return k->width == 512 ? segment512(k, s, p, bytes, len_blk) : segment256(k, s, p, bytes, len_blk);
}

TV_BASE void tv_ghash_wide_aad(const tv_ghash_key *k, const uint8_t *aad, size_t len, uint8_t out[16]) {
  __m128i s = _mm_setzero_si128();
  size_t off = 0;
  /* All but the last segment are whole blocks; the last holds the tail and the length block. */
  while (len - off > (size_t)(NPOW - 1) * 16) {
    size_t blocks = (len - off) / 16;
    if (blocks > NPOW) blocks = NPOW;
    s = segment(k, s, aad + off, blocks * 16, NULL);
    off += blocks * 16;
  }
  /* GHASH length block: bit lengths of A and C as big-endian 64-bit; reversed, A's sits in
   * the high half and C's (0 for GMAC) in the low half. */
  const __m128i len_blk = _mm_set_epi64x((long long)((uint64_t)len * 8), 0);
  s = segment(k, s, aad + off, len - off, &len_blk);
  _mm_storeu_si128((__m128i *)out, rev128(s));
}

#endif /* __x86_64__ */
