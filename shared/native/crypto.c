#include "crypto.h"
#include "tv.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/crypto.h>

_Static_assert(TV_TAG_LEN == 16, "GMAC tags are written whole");

static int hmac_init(tv_keyctx *k, const uint8_t *key, size_t key_len) {
  uint8_t block[SHA256_CBLOCK];
  uint8_t hashed[SHA256_DIGEST_LENGTH];
  memset(block, 0, sizeof block);
  if (key_len > SHA256_CBLOCK) {
    SHA256(key, key_len, hashed);
    memcpy(block, hashed, sizeof hashed);
  } else {
    memcpy(block, key, key_len);
  }
  uint8_t pad[SHA256_CBLOCK];
  for (size_t i = 0; i < SHA256_CBLOCK; i++) pad[i] = block[i] ^ 0x36;
  int ok = SHA256_Init(&k->inner) && SHA256_Update(&k->inner, pad, sizeof pad);
  for (size_t i = 0; i < SHA256_CBLOCK; i++) pad[i] = block[i] ^ 0x5c;
  ok = ok && SHA256_Init(&k->outer) && SHA256_Update(&k->outer, pad, sizeof pad);
  OPENSSL_cleanse(block, sizeof block);
  OPENSSL_cleanse(pad, sizeof pad);
  OPENSSL_cleanse(hashed, sizeof hashed);
  return ok ? 0 : -1;
}

static void hmac_tag(const tv_keyctx *k, const uint8_t *data, size_t len, uint8_t out[SHA256_DIGEST_LENGTH]) {
  SHA256_CTX c = k->inner;
  SHA256_Update(&c, data, len);
  SHA256_Final(out, &c);
  c = k->outer;
  SHA256_Update(&c, out, SHA256_DIGEST_LENGTH);
  SHA256_Final(out, &c);
  OPENSSL_cleanse(&c, sizeof c);
}

/* block128_f for the GCM core: one AES-256 block through the ECB context (AES-NI where the
 * CPU has it, constant time either way, unlike the table-based AES_encrypt). */
static void gcm_block(const unsigned char in[16], unsigned char out[16], const void *ecb) {
  int outl;
  EVP_EncryptUpdate((EVP_CIPHER_CTX *)ecb, out, &outl, in, 16);
}

/* The widest GHASH the CPU runs (512, 256; 0 = OpenSSL's GCM core), unless the operator
 * asked for a narrower one with TINYVINE_GMAC=openssl|avx2 (for comparison, or to rule ours
 * out when debugging); decided once per process. */
static int gmac_width(void) {
  static int decided = -1;
  if (decided < 0) {
    const char *env = getenv("TINYVINE_GMAC");
    decided = tv_ghash_wide_width();
    if (env && strcmp(env, "openssl") == 0) decided = 0;
    if (env && strcmp(env, "avx2") == 0 && decided > 256) decided = 256;
  }
  return decided;
}

const char *tv_gmac_impl(void) {
  int w = gmac_width();
  return w == 512 ? "avx512-vpclmulqdq" : w == 256 ? "avx2-vpclmulqdq" : "openssl";
}

static int gmac_init(tv_keyctx *k, const uint8_t *key, int width) {
  k->block = EVP_CIPHER_CTX_new();
  int ok = k->block && EVP_EncryptInit_ex(k->block, EVP_aes_256_ecb(), NULL, key, NULL) == 1 &&
           EVP_CIPHER_CTX_set_padding(k->block, 0) == 1;
  if (ok && width) {
    uint8_t h[16] = {0};
    ok = posix_memalign((void **)&k->wide, 64, sizeof *k->wide) == 0;
    if (ok) {
      gcm_block(h, h, k->block); /* H = AES_K(0^128) */
      tv_ghash_wide_init(k->wide, h, width);
    } else {
      k->wide = NULL;
    }
    OPENSSL_cleanse(h, sizeof h);
  } else if (ok) {
    k->gcm = CRYPTO_gcm128_new(k->block, gcm_block);
    ok = k->gcm != NULL;
  }
  if (!ok) {
    if (k->block) EVP_CIPHER_CTX_free(k->block);
    k->block = NULL;
    return -1;
  }
  return 0;
}

/* The GMAC tag of data (GCM with data as associated data and nothing encrypted). */
static int gmac_tag(tv_keyctx *k, const uint8_t nonce[12], const uint8_t *data, size_t len, uint8_t tag[16]) {
  if (k->wide) {
    /* tag = GHASH_H(A, empty) xor AES_K(J0), J0 = nonce || 0^31 || 1 */
    uint8_t j0[16], mask[16];
    memcpy(j0, nonce, 12);
    tv_wr32(j0 + 12, 1);
    tv_ghash_wide_aad(k->wide, data, len, tag);
    gcm_block(j0, mask, k->block);
    for (int i = 0; i < 16; i++) tag[i] ^= mask[i];
    return 0;
  }
  CRYPTO_gcm128_setiv(k->gcm, nonce, 12);
  if (CRYPTO_gcm128_aad(k->gcm, data, len) != 0) return -1;
  CRYPTO_gcm128_tag(k->gcm, tag, 16);
  return 0;
}

/* A GHASH width this CPU runs: 0 (OpenSSL's), or one of ours up to the widest it has. */
static int width_runs(int width) {
  return (width == 0 || width == 256 || width == 512) && width <= tv_ghash_wide_width();
}

int tv_gmac_tag(int width, const uint8_t *key, const uint8_t nonce[12], const uint8_t *data, size_t len, uint8_t tag[16]) {
  if (!width_runs(width)) return -1;
  tv_keyctx k;
  memset(&k, 0, sizeof k);
  k.mode = AUTH_GMAC;
  if (gmac_init(&k, key, width) < 0) return -1;
  int r = gmac_tag(&k, nonce, data, len, tag);
  tv_key_free(&k);
  return r;
}

double tv_gmac_bench(int width, size_t len, int iters, int rounds) {
  if (!width_runs(width)) return -1;
  if (iters < 1 || rounds < 1 || len > 65536) return -1;
  uint8_t key[TV_KEY_LEN], nonce[12] = {0}, tag[16];
  uint8_t *data = malloc(len ? len : 1);
  if (!data) return -1;
  for (size_t i = 0; i < TV_KEY_LEN; i++) key[i] = (uint8_t)(i * 7 + 1);
  for (size_t i = 0; i < len; i++) data[i] = (uint8_t)(i * 13);
  tv_keyctx k;
  memset(&k, 0, sizeof k);
  k.mode = AUTH_GMAC;
  if (gmac_init(&k, key, width) < 0) {
    free(data);
    return -1;
  }
  /* the fastest round: the machine is shared, and noise only ever adds time */
  double best = -1;
  for (int r = 0; r < rounds; r++) {
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < iters; i++) {
      tv_wr32(nonce, (uint32_t)i); /* a fresh nonce per tag, as on the wire */
      gmac_tag(&k, nonce, data, len, tag);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ns = ((double)(t1.tv_sec - t0.tv_sec) * 1e9 + (double)(t1.tv_nsec - t0.tv_nsec)) / iters;
    if (best < 0 || ns < best) best = ns;
  }
  tv_key_free(&k);
  free(data);
  return best;
}

int tv_key_init(tv_keyctx *k, int mode, const uint8_t *key, size_t key_len, int encrypt) {
  memset(k, 0, sizeof *k);
  k->mode = mode;
  if (mode == AUTH_NONE) return 0;
  if (key_len != TV_KEY_LEN) return -1;
  if (mode == AUTH_HMAC) return hmac_init(k, key, key_len);
  if (mode == AUTH_GMAC) return gmac_init(k, key, gmac_width());
  const EVP_CIPHER *cipher;
  if (mode == AUTH_AES_GCM) cipher = EVP_aes_256_gcm();
  else if (mode == AUTH_CHACHA) cipher = EVP_chacha20_poly1305();
  else return -1;
  k->aead = EVP_CIPHER_CTX_new();
  if (!k->aead) return -1;
  int ok = encrypt ? EVP_EncryptInit_ex(k->aead, cipher, NULL, NULL, NULL)
                   : EVP_DecryptInit_ex(k->aead, cipher, NULL, NULL, NULL);
  ok = ok == 1 && EVP_CIPHER_CTX_ctrl(k->aead, EVP_CTRL_AEAD_SET_IVLEN, 12, NULL) == 1;
  ok = ok && (encrypt ? EVP_EncryptInit_ex(k->aead, NULL, NULL, key, NULL)
                      : EVP_DecryptInit_ex(k->aead, NULL, NULL, key, NULL)) == 1;
  if (!ok) {
    EVP_CIPHER_CTX_free(k->aead);
    k->aead = NULL;
    return -1;
  }
  return 0;
}

void tv_key_free(tv_keyctx *k) {
  if (k->aead) EVP_CIPHER_CTX_free(k->aead); /* cleanses the key schedule */
  if (k->gcm) CRYPTO_gcm128_release(k->gcm); /* cleanses H and the GHASH state */
  if (k->block) EVP_CIPHER_CTX_free(k->block);
  if (k->wide) {
    OPENSSL_cleanse(k->wide, sizeof *k->wide); /* powers of H */
    free(k->wide);
  }
  OPENSSL_cleanse(k, sizeof *k);
}

static void make_nonce(uint8_t nonce[12], const uint8_t *hdr) {
  memset(nonce, 0, 4);
  memcpy(nonce + 4, hdr + 16, 8); /* counter, already big-endian in the header */
}

int tv_seal(tv_keyctx *k, uint8_t *dgram, size_t plen) {
  uint8_t *tag = dgram + TV_HEADER_LEN + plen;
  if (k->mode == AUTH_NONE) return 0;
  if (k->mode == AUTH_HMAC) {
    uint8_t full[SHA256_DIGEST_LENGTH];
    hmac_tag(k, dgram, TV_HEADER_LEN + plen, full);
    memcpy(tag, full, TV_TAG_LEN);
    return 0;
  }
  if (k->mode == AUTH_GMAC) {
    /* Authenticate only: the whole datagram is associated data, the payload stays in clear. */
    uint8_t nonce[12];
    make_nonce(nonce, dgram);
    return gmac_tag(k, nonce, dgram, TV_HEADER_LEN + plen, tag);
  }
  uint8_t nonce[12], scratch[32];
  int outl;
  make_nonce(nonce, dgram);
  EVP_CIPHER_CTX *c = k->aead;
  if (EVP_EncryptInit_ex(c, NULL, NULL, NULL, nonce) != 1) return -1;
  if (EVP_EncryptUpdate(c, NULL, &outl, dgram, TV_HEADER_LEN) != 1) return -1;
  if (plen && EVP_EncryptUpdate(c, dgram + TV_HEADER_LEN, &outl, dgram + TV_HEADER_LEN, (int)plen) != 1) return -1;
  if (EVP_EncryptFinal_ex(c, scratch, &outl) != 1) return -1;
  if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, TV_TAG_LEN, tag) != 1) return -1;
  return 0;
}

int tv_open(tv_keyctx *k, uint8_t *dgram, size_t plen) {
  uint8_t *tag = dgram + TV_HEADER_LEN + plen;
  if (k->mode == AUTH_NONE) return 1;
  if (k->mode == AUTH_HMAC) {
    uint8_t full[SHA256_DIGEST_LENGTH];
    hmac_tag(k, dgram, TV_HEADER_LEN + plen, full);
    return CRYPTO_memcmp(full, tag, TV_TAG_LEN) == 0;
  }
  if (k->mode == AUTH_GMAC) {
    uint8_t nonce[12], want[16];
    make_nonce(nonce, dgram);
    if (gmac_tag(k, nonce, dgram, TV_HEADER_LEN + plen, want) != 0) return 0;
    return CRYPTO_memcmp(want, tag, TV_TAG_LEN) == 0; /* constant time */
  }
  uint8_t nonce[12], tagcopy[TV_TAG_LEN], scratch[32];
  int outl;
  make_nonce(nonce, dgram);
  memcpy(tagcopy, tag, TV_TAG_LEN);
  EVP_CIPHER_CTX *c = k->aead;
  if (EVP_DecryptInit_ex(c, NULL, NULL, NULL, nonce) != 1) return 0;
  if (EVP_DecryptUpdate(c, NULL, &outl, dgram, TV_HEADER_LEN) != 1) return 0;
  if (plen && EVP_DecryptUpdate(c, dgram + TV_HEADER_LEN, &outl, dgram + TV_HEADER_LEN, (int)plen) != 1) return 0;
  if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, TV_TAG_LEN, tagcopy) != 1) return 0;
  /* OpenSSL compares the tag in constant time. */
  return EVP_DecryptFinal_ex(c, scratch, &outl) > 0;
}
