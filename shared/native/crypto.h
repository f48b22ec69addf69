/* Per-session, per-direction authentication state for DATA/KEEPALIVE. */
#ifndef TV_CRYPTO_H
#define TV_CRYPTO_H

#include <stddef.h>
#include <stdint.h>
#include <openssl/evp.h>
#include <openssl/modes.h>
#include <openssl/sha.h>

#include "ghash-wide.h"

typedef struct {
  int mode;
  /* HMAC: SHA-256 states after absorbing key^ipad / key^opad, so a packet costs
   * two compressions fewer and no key handling. */
  SHA256_CTX inner, outer;
  /* AEAD: context keyed once; per packet only the nonce is set. */
  EVP_CIPHER_CTX *aead;
  /* GMAC: OpenSSL's GCM core driven directly (GHASH over the datagram, one AES block
   * for the tag mask through `block`, an AES-256-ECB EVP context). Through the EVP AEAD
   * interface every packet paid ~100 ns of parameter handling (IV length queries, tag
   * get/set by name), a third of the whole MAC for a 1444-byte datagram. */
  EVP_CIPHER_CTX *block;
  GCM128_CONTEXT *gcm;
  /* GMAC with the wide GHASH (ghash-wide.h) where the CPU has it: then `gcm` is NULL and
   * only the tag mask goes through `block`. */
  tv_ghash_key *wide;
} tv_keyctx;

/* Which GHASH the GMAC mode uses on this machine: "avx512-vpclmulqdq", "avx2-vpclmulqdq"
 * (VPCLMULQDQ without AVX-512, or TINYVINE_GMAC=avx2) or "openssl" (no VPCLMULQDQ, or
 * TINYVINE_GMAC=openssl in the environment). */
const char *tv_gmac_impl(void);
/* Test hook: the 16-byte AES-256-GMAC tag of `data` under `key` and a 12-byte nonce,
 * (32 bytes) through the wide GHASH of `width` 512 or 256 (-1 if unsupported here) or
 * OpenSSL's GCM core (width 0). */
int tv_gmac_tag(int width, const uint8_t *key, const uint8_t nonce[12], const uint8_t *data, size_t len,
                uint8_t tag[16]);
/* Nanoseconds per GMAC tag of `len` bytes through that GHASH (width as in tv_gmac_tag): the
 * fastest of `rounds` rounds of `iters` tags; -1 if unsupported here. For the benchmark. */
double tv_gmac_bench(int width, size_t len, int iters, int rounds);

/* 0 on success, -1 on failure (bad mode/key length or OpenSSL error). */
int tv_key_init(tv_keyctx *k, int mode, const uint8_t *key, size_t key_len, int encrypt);
void tv_key_free(tv_keyctx *k);
/* dgram = 24-byte header followed by plen payload bytes; writes the tag right after
 * the payload (encrypting the payload in place for AEAD). 0 ok, -1 error. */
int tv_seal(tv_keyctx *k, uint8_t *dgram, size_t plen);
/* Verifies the tag after the payload; for AEAD decrypts in place. 1 valid, 0 not. */
int tv_open(tv_keyctx *k, uint8_t *dgram, size_t plen);

#endif
