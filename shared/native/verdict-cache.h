/* A FullVR's verdict cache: (incoming session, network, IP version, source, destination)
 * -> (action, outgoing network), filled from the routing decision JS made for a packet.
 *
 * Why: the FullVR's decision (LNDT/GNDT tries, isolation, relaying) lives in JS, and
 * calling JS costs more per wake-up than the decision itself (V8's callback machinery).
 * With the cache the engine forwards packets of known flows straight from the poll
 * callback and calls JS only for batches that hold a miss or a control message.
 *
 * An entry is trusted only under the generation and the session epoch it was filled in:
 * JS bumps the generation on every change its decision depends on (tables, members,
 * peers), the engine bumps the epoch on every session change, so a stale verdict is never
 * used. Drops are not cached: JS counts them per reason. Direct-mapped: a collision just
 * evicts (a miss costs one JS call, never a wrong verdict). */
#ifndef TV_VERDICT_CACHE_H
#define TV_VERDICT_CACHE_H

#include <stdint.h>
#include <string.h>

#define TV_VC_SIZE 4096 /* power of two */

typedef struct {
  uint32_t gen, epoch; /* gen 0 is never current: calloc'ed entries are empty */
  int32_t session, net;
  int32_t action, outnet;
  uint8_t version, relayed, alen;
  uint8_t addr[32]; /* source and destination: 8 bytes (IPv4) or 32 (IPv6) */
} tv_vc_entry;

typedef struct {
  tv_vc_entry e[TV_VC_SIZE];
} tv_vcache;

/* What a verdict depends on, beyond the routing state: where the packet came from and its addresses. */
typedef struct {
  int32_t session, net; /* incoming session (-1: the TUN) and the network it named */
  int version;          /* 4 or 6 */
  const uint8_t *addr;  /* source and destination, in the packet */
  uint8_t alen;
} tv_vc_key;

/* The key of the IP packet p (len bytes); 0 if it is too short or not IP (JS decides and
 * drops those). */
static inline int tv_vc_key_of(tv_vc_key *k, int32_t session, int32_t net, const uint8_t *p, int32_t len) {
  int v = p[0] >> 4;
  k->session = session, k->net = net, k->version = v;
  if (v == 4 && len >= 20) {
    k->addr = p + 12, k->alen = 8;
    return 1;
  }
  if (v == 6 && len >= 40) {
    k->addr = p + 8, k->alen = 32;
    return 1;
  }
  return 0;
}

static inline tv_vc_entry *tv_vc_slot(tv_vcache *c, const tv_vc_key *k) {
  uint32_t h = 2166136261u; /* FNV-1a */
  h = (h ^ (uint32_t)k->session) * 16777619u;
  h = (h ^ (uint32_t)k->net) * 16777619u;
  for (int i = 0; i < k->alen; i++) h = (h ^ k->addr[i]) * 16777619u;
  return &c->e[(h ^ (h >> 15)) & (TV_VC_SIZE - 1)];
}

/* Does entry x hold the verdict for k under (gen, epoch)? */
static inline int tv_vc_match(const tv_vc_entry *x, uint32_t gen, uint32_t epoch, const tv_vc_key *k) {
  return gen != 0 && x->gen == gen && x->epoch == epoch && x->session == k->session && x->net == k->net &&
         x->version == k->version && memcmp(x->addr, k->addr, k->alen) == 0;
}

/* The cached entry for k under (gen, epoch), or NULL. */
static inline const tv_vc_entry *tv_vc_find(tv_vcache *c, uint32_t gen, uint32_t epoch, const tv_vc_key *k) {
  const tv_vc_entry *x = tv_vc_slot(c, k);
  return tv_vc_match(x, gen, epoch, k) ? x : NULL;
}

static inline void tv_vc_put(tv_vcache *c, uint32_t gen, uint32_t epoch, const tv_vc_key *k, int32_t action,
                             int32_t outnet, int relayed) {
  tv_vc_entry *x = tv_vc_slot(c, k);
  x->gen = gen, x->epoch = epoch, x->session = k->session, x->net = k->net;
  x->action = action, x->outnet = outnet;
  x->version = (uint8_t)k->version, x->relayed = (uint8_t)(relayed != 0), x->alen = k->alen;
  memcpy(x->addr, k->addr, k->alen);
}

#endif
