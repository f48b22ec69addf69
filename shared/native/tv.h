/* Constants shared with shared/packet-engine.ts and docs/wire-format.md. */
#ifndef TV_H
#define TV_H

#include <stdint.h>
#include <stddef.h>
#include <string.h>

#define TV_SLOT_SIZE 2048
#define TV_HEADROOM 64
#define TV_HEADER_LEN 24
#define TV_TAG_LEN 16
#define TV_META_FIELDS 10
#define TV_ADDR_STRIDE 20
#define TV_MAX_BATCH 1024 /* UIO_MAXIOV: the most recvmmsg/sendmmsg take at once */
#define TV_MAX_HOPS 3
#define TV_MAX_SESSION 65535
#define TV_VERSION 1
#define TV_KEY_LEN 32
/* Largest inner packet that still leaves room for header before and tag after it. */
#define TV_MAX_MTU (TV_SLOT_SIZE - TV_HEADROOM - TV_TAG_LEN)
#define TV_MIN_MTU 68 /* IPv4 minimum; config allows pathMtu 576, i.e. a 508-byte TUN */

enum { M_LEN, M_KIND, M_SESSION, M_NETWORK, M_OFF, M_ACTION, M_OUTNET, M_SENDER, M_HOPS, M_TYPE };
enum { KIND_DATA = 1, KIND_KEEPALIVE = 2, KIND_CONTROL = 3 };
enum {
  DR_TRUNCATED = 1, DR_BAD_VERSION, DR_BAD_TYPE, DR_UNKNOWN_SESSION, DR_BAD_MODE,
  DR_BAD_TAG, DR_REPLAY, DR_HOP_LIMIT, DR_OVERSIZE, DR_COUNT
};
enum { T_DATA = 1, T_KEEPALIVE, T_INIT, T_RESP, T_ERROR, T_QUEUE };
/* AUTH_GMAC: AES-256-GCM over header and payload as associated data only (no encryption). */
enum { AUTH_NONE = 0, AUTH_HMAC, AUTH_AES_GCM, AUTH_CHACHA, AUTH_GMAC };
#define ACTION_DROP (-1)
#define ACTION_TUN 0

static inline uint16_t tv_rd16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline void tv_wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline uint32_t tv_rd32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline void tv_wr32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline uint64_t tv_rd64(const uint8_t *p) { return ((uint64_t)tv_rd32(p) << 32) | tv_rd32(p + 4); }
static inline void tv_wr64(uint8_t *p, uint64_t v) { tv_wr32(p, (uint32_t)(v >> 32)); tv_wr32(p + 4, (uint32_t)v); }

#endif
