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

/* The key of the IP packet p (len bytes): its addresses; 0 if it is too short or not IP
 * (JS decides and drops those). */
static inline int tv_vc_addrs(const uint8_t *p, int32_t len, const uint8_t **addrs, uint8_t *alen) {
  int v = p[0] >> 4;
  if (v == 4 && len >= 20) {
    *addrs = p + 12, *alen = 8;
    return 4;
  }
  if (v == 6 && len >= 40) {
    *addrs = p + 8, *alen = 32;
    return 6;
  }
  return 0;
}

static inline tv_vc_entry *tv_vc_slot(tv_vcache *c, int32_t session, int32_t net, const uint8_t *a, uint8_t alen) {
  uint32_t h = 2166136261u; /* FNV-1a */
  h = (h ^ (uint32_t)session) * 16777619u;
  h = (h ^ (uint32_t)net) * 16777619u;
  for (int i = 0; i < alen; i++) h = (h ^ a[i]) * 16777619u;
  return &c->e[(h ^ (h >> 15)) & (TV_VC_SIZE - 1)];
}

/* The cached entry for this key under (gen, epoch), or NULL. */
static inline const tv_vc_entry *tv_vc_find(tv_vcache *c, uint32_t gen, uint32_t epoch, int32_t session, int32_t net,
                                            int version, const uint8_t *a, uint8_t alen) {
  const tv_vc_entry *x = tv_vc_slot(c, session, net, a, alen);
  if (x->gen != gen || x->epoch != epoch || gen == 0 || x->session != session || x->net != net ||
      x->version != version || memcmp(x->addr, a, alen) != 0)
    return NULL;
  return x;
}

static inline void tv_vc_put(tv_vcache *c, uint32_t gen, uint32_t epoch, int32_t session, int32_t net, int version,
                             const uint8_t *a, uint8_t alen, int32_t action, int32_t outnet, int relayed) {
  tv_vc_entry *x = tv_vc_slot(c, session, net, a, alen);
  x->gen = gen, x->epoch = epoch, x->session = session, x->net = net;
  x->action = action, x->outnet = outnet;
  x->version = (uint8_t)version, x->relayed = (uint8_t)(relayed != 0), x->alen = alen;
  memcpy(x->addr, a, alen);
}

#endif
