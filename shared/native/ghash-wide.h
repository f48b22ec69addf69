/* GHASH for AES-GMAC with wide carry-less multiplies: 512-bit (AVX-512 + VPCLMULQDQ) or
 * 256-bit (AVX2 + VPCLMULQDQ, e.g. AMD Zen 3, which has VPCLMULQDQ but no AVX-512).
 *
 * Why our own: GHASH was the largest single cost of the data plane (22 % of all CPU
 * samples of the lab box during a gmac transfer, six MACs per byte end to end), and
 * no library reachable here multiplies more than one block per instruction for
 * associated data: the OpenSSL 3.0 inside Node (gcm_ghash_avx, 128-bit PCLMUL), the
 * system's libgcrypt 1.10 (measured: 240-255 ns per 1444-byte GMAC, vs 228 ns for
 * OpenSSL's GCM core) and nettle 3.8 do not.
 *
 * Only GHASH is ours; AES (H, the tag mask) stays with OpenSSL. Every datagram is hashed
 * with precomputed powers of H, four (or two) blocks per instruction, with one reduction per
 * TV_GHASH_POWERS blocks instead of one per block. Tags are bit-identical to AES-GCM's
 * (unit-tested against Node's aes-256-gcm and OpenSSL's GCM core for every length). */
#ifndef TV_GHASH_WIDE_H
#define TV_GHASH_WIDE_H

#include <stddef.h>
#include <stdint.h>

/* Blocks hashed per reduction: a whole datagram up to 2032 bytes (one slot) is one. */
#define TV_GHASH_POWERS 128

typedef struct {
  /* pow[j] = H^(TV_GHASH_POWERS - j) in POLYVAL form (descending, so that four
   * consecutive blocks load four consecutive powers), then 3 zero entries that a
   * partly filled last load may read. */
  uint8_t pow[TV_GHASH_POWERS + 3][16] __attribute__((aligned(64)));
  /* kar[j]: both halves of pow[j] xored (Karatsuba's middle factor, for the 256-bit loop) */
  uint8_t kar[TV_GHASH_POWERS + 3][16] __attribute__((aligned(64)));
  int width; /* 512 or 256: which loop hashes with this key */
} tv_ghash_key;

/* The widest GHASH this CPU (and the OS, for the 512-bit state) runs: 512, 256 or 0. */
int tv_ghash_wide_width(void);
/* h: the GHASH key, AES_K(0^128), as in GCM; width: 512 or 256, at most
 * tv_ghash_wide_width(). */
void tv_ghash_wide_init(tv_ghash_key *k, const uint8_t h[16], int width);
/* GHASH_H(A, C = empty) for GMAC: the associated data zero-padded to whole blocks,
 * then the length block (bit length of A, 0). */
void tv_ghash_wide_aad(const tv_ghash_key *k, const uint8_t *aad, size_t len, uint8_t out[16]);

#endif
