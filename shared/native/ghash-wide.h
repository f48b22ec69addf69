/* GHASH for AES-GMAC with 512-bit carry-less multiplies (AVX-512 + VPCLMULQDQ).
 *
 * Why our own: GHASH was the largest single cost of the data plane (22 % of all CPU
 * samples of the lab box during a gmac transfer, six MACs per byte end to end), and
 * no library reachable here multiplies more than one block per instruction for
 * associated data: the OpenSSL 3.0 inside Node (gcm_ghash_avx, 128-bit PCLMUL), the
 * system's libgcrypt 1.10 (measured: 240-255 ns per 1444-byte GMAC, vs 228 ns for
 * OpenSSL's GCM core) and nettle 3.8 do not.
 *
 * Only GHASH is ours; AES (H, the tag mask) stays with OpenSSL. Every datagram is hashed
 * with precomputed powers of H, four blocks per instruction, with one reduction per
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
} tv_ghash_key;

/* 1 if this CPU (and the OS, for the 512-bit state) runs the wide GHASH. */
int tv_ghash_wide_supported(void);
/* h: the GHASH key, AES_K(0^128), as in GCM. */
void tv_ghash_wide_init(tv_ghash_key *k, const uint8_t h[16]);
/* GHASH_H(A, C = empty) for GMAC: the associated data zero-padded to whole blocks,
 * then the length block (bit length of A, 0). */
void tv_ghash_wide_aad(const tv_ghash_key *k, const uint8_t *aad, size_t len, uint8_t out[16]);

#endif
