/* The native pumps: the TinyVR's fixed decision and the FullVR's cached routing, run
 * straight from the poll callback (read, decide, forward); JS hears only of control
 * messages and, for the FullVR, of batches the verdict cache cannot decide. */
#include <node_api.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "engine.h"
#include "napi-util.h"
#include "tv.h"
#include "verdict-cache.h"

/* ---------- fused pumps (the TinyVR's data path) ----------
 * A TinyVR's decision is fixed: whatever its TUN gives goes to its one session, and a
 * datagram from the FullVR goes to the TUN only if it is addressed to this host. Reading,
 * deciding and forwarding in one native call per wake-up spares the generic JS pump's
 * round trips (read, decide loop, forward: ~15 % of a TinyVR's CPU at low packet rates,
 * i.e. latency on every crossing). Routers with real decisions (the FullVR) keep the
 * generic read/decide/forward calls. */
#define TV_PUMP_BATCHES 16 /* batches per wake-up, as the JS pump: the other fd gets its turn */

/* Shortcut routes of a TinyVR (cfg[TV_SC_COUNT] entries from cfg[TV_SC_BASE], TV_SC_FIELDS
 * each: session, family 4|6, prefix bits, the prefix's 16 address bytes as 4 int32s, hits,
 * flags): a packet whose destination lies in one goes to that session (a peer FullVR serving
 * the destination's site, or with TV_SC_DIRECT another member: a direct path) instead of the
 * default one; an entry with session 0 (not open) sends it the default way. Either way the
 * entry's hits count the packet: that is how the TinyVR sees which shortcuts are wanted
 * (opened on demand, closed when idle). A handful of sites and peers, so a linear scan. */
enum { TV_SC_COUNT = 4, TV_SC_BASE = 8, TV_SC_FIELDS = 9, TV_SC_HITS = 7, TV_SC_FLAGS = 8, TV_SC_MAX = 32 };
/* Entries that may match one address and count it: a direct path's host route, a shortcut's
 * site route, a wider route (more would be a configuration no router offers). */
#define TV_SC_MAX_MATCHES 4
enum { TV_SC_DIRECT = 1, TV_SC_RXONLY = 2 /* closing: still receives (source check), no longer sent to */ };

typedef struct {
  int32_t *cfg; /* NULL: no shortcuts */
  int n;
  int ndirect; /* entries flagged TV_SC_DIRECT: without any, no source is checked */
  /* the last answer: consecutive packets to one destination (a super-packet's segments)
   * reuse it instead of scanning again; valid for one wake-up (JS may rewrite cfg between) */
  int last_v;
  uint8_t last_dst[16];
  int32_t last;
  int last_nhits;
  int32_t *last_hits[TV_SC_MAX_MATCHES]; /* the matching entries' hit counters */
} tv_shortcuts;

static int prefix_match(const uint8_t *a, const uint8_t *prefix, int bits) {
  int full = bits / 8, rest = bits % 8;
  if (memcmp(a, prefix, (size_t)full) != 0) return 0;
  return rest == 0 || ((a[full] ^ prefix[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* The session for a packet: the longest matching entry that sends (an open shortcut or direct
 * path, not one that only receives while it closes), else `session` (our FullVR). The entry
 * it is sent by counts it, and so does every more specific one that does not send: a
 * direct path not open counts the demand that asks for it again, a shortcut not open the
 * demand that opens it (also when a direct path to that host is not open). */
static int32_t shortcut_session(tv_shortcuts *sc, const uint8_t *p, int32_t len, int32_t session) {
  int v = p[0] >> 4;
  if (v == 4 ? len < 20 : v != 6 || len < 40) return session;
  const uint8_t *dst = v == 4 ? p + 16 : p + 24;
  size_t alen = v == 4 ? 4 : 16;
  if (sc->last_v != v || memcmp(sc->last_dst, dst, alen) != 0) {
    int32_t to = session, *match[TV_SC_MAX_MATCHES];
    int bits_of[TV_SC_MAX_MATCHES], n = 0, best_tx = -1;
    for (int i = 0; i < sc->n; i++) {
      int32_t *r = sc->cfg + TV_SC_BASE + i * TV_SC_FIELDS;
      int bits = r[2];
      if (r[1] != v || bits < 0 || bits > (v == 4 ? 32 : 128)) continue;
      if (!prefix_match(dst, (const uint8_t *)(r + 3), bits)) continue;
      if (n < TV_SC_MAX_MATCHES) match[n] = r + TV_SC_HITS, bits_of[n++] = bits;
      if (r[0] > 0 && !(r[TV_SC_FLAGS] & TV_SC_RXONLY) && bits > best_tx) best_tx = bits, to = r[0];
    }
    sc->last_nhits = 0;
    for (int i = 0; i < n; i++)
      if (bits_of[i] >= best_tx) sc->last_hits[sc->last_nhits++] = match[i];
    sc->last_v = v;
    memcpy(sc->last_dst, dst, alen);
    sc->last = to;
  }
  for (int i = 0; i < sc->last_nhits; i++) /* wraps; JS looks for a change */
    *sc->last_hits[i] = (int32_t)((uint32_t)*sc->last_hits[i] + 1u);
  return sc->last;
}

/* One TUN batch to `session` (<= 0: dropped) or a shortcut's -> packets read (0: nothing to read). */
static int tun_pump_batch(tv_engine *e, uint8_t *buf, int32_t *meta, int cap, int32_t session, int32_t outnet,
                          tv_shortcuts *sc) {
  int n = tun_read(e, buf, meta, cap);
  if (n <= 0) return 0;
  for (int i = 0; i < n; i++) {
    int32_t *m = meta + (size_t)i * TV_META_FIELDS;
    if (m[M_KIND] <= 0) continue; /* already dropped (oversize) */
    int32_t to = sc->n ? shortcut_session(sc, buf + (size_t)i * TV_SLOT_SIZE + m[M_OFF], m[M_LEN], session) : session;
    m[M_ACTION] = to > 0 ? to : ACTION_DROP;
    m[M_OUTNET] = outnet;
    m[M_HOPS] = -1; /* a TinyVR is no VR: its packets leave with hops 0 */
  }
  forward_batch(e, buf, meta, n, cap);
  return n;
}

/* Up to TV_PUMP_BATCHES TUN batches (the other fd gets its turn) -> packets read. */
static int tun_pump(tv_engine *e, uint8_t *buf, int32_t *meta, int cap, int32_t session, int32_t outnet,
                    tv_shortcuts *sc) {
  int total = 0;
  for (int k = 0; k < TV_PUMP_BATCHES && !e->closed; k++) {
    int n = tun_pump_batch(e, buf, meta, cap, session, outnet, sc);
    total += n;
    if (n < cap) break;
  }
  return total;
}

/* The entries JS wrote in cfg, bounded by the array it gave (JS may rewrite cfg whenever it runs). */
static void sc_load(tv_shortcuts *sc, const tv_pump *q) {
  int32_t *cfg = q->cfg;
  sc->cfg = cfg, sc->n = 0, sc->ndirect = 0, sc->last_v = 0;
  if (q->cfg_len <= TV_SC_COUNT || cfg[TV_SC_COUNT] <= 0) return;
  size_t room = q->cfg_len > TV_SC_BASE ? (q->cfg_len - TV_SC_BASE) / TV_SC_FIELDS : 0;
  sc->n = cfg[TV_SC_COUNT] < (int32_t)room ? cfg[TV_SC_COUNT] : (int)room;
  if (sc->n > TV_SC_MAX) sc->n = TV_SC_MAX;
  for (int i = 0; i < sc->n; i++) sc->ndirect += (cfg[TV_SC_BASE + i * TV_SC_FIELDS + TV_SC_FLAGS] & TV_SC_DIRECT) != 0;
}

/* DATA on a direct path's session comes from another member, whose source no FullVR checked:
 * it must be one of that member's own addresses (its entries). 1: fine (not a direct
 * session, or a source of its own), 0: spoofed. A GRO batch's segments share session and
 * source, so the last answer is kept for the next slot. */
typedef struct {
  int32_t session;
  int v, ok;
  uint8_t src[16];
} tv_src_memo;

static int direct_source_ok(const tv_shortcuts *sc, tv_src_memo *memo, int32_t session, const uint8_t *p, int v) {
  const uint8_t *src = v == 4 ? p + 12 : p + 8;
  size_t alen = v == 4 ? 4 : 16;
  if (memo->session == session && memo->v == v && memo->session > 0 && memcmp(memo->src, src, alen) == 0) return memo->ok;
  int direct = 0, ok = 0;
  for (int i = 0; i < sc->n && !ok; i++) {
    const int32_t *r = sc->cfg + TV_SC_BASE + i * TV_SC_FIELDS;
    if (!(r[TV_SC_FLAGS] & TV_SC_DIRECT) || r[0] != session) continue;
    direct = 1;
    if (r[1] == v && r[2] >= 0 && r[2] <= (v == 4 ? 32 : 128) && prefix_match(src, (const uint8_t *)(r + 3), r[2])) ok = 1;
  }
  memo->session = session, memo->v = v, memo->ok = ok || !direct;
  memcpy(memo->src, src, alen);
  return memo->ok;
}

static int addr_in(const uint8_t *a, const uint8_t *list, uint32_t count, size_t width) {
  for (uint32_t i = 0; i < count; i++)
    if (memcmp(a, list + (size_t)i * width, width) == 0) return 1;
  return 0;
}

#define TV_PUMP_CONTROL 0x10000

/* One UDP batch: DATA addressed to an own address to the TUN, the rest dropped (not_for_me
 * counts DATA for others) -> n, | TV_PUMP_CONTROL when CONTROL slots are left for the caller. */
static int udp_pump_batch(tv_engine *e, uint8_t *buf, int32_t *meta, uint8_t *addr, int cap, const uint8_t *o4,
                          uint32_t n4, const uint8_t *o6, uint32_t n6, const tv_shortcuts *sc) {
  int n = udp_read(e, buf, meta, addr, cap);
  if (n <= 0) return 0;
  int ctrl = 0;
  tv_src_memo memo = {0};
  for (int i = 0; i < n; i++) {
    int32_t *m = meta + (size_t)i * TV_META_FIELDS;
    int32_t kind = m[M_KIND];
    m[M_ACTION] = ACTION_DROP;
    if (kind == KIND_CONTROL) ctrl = 1;
    if (kind != KIND_DATA) continue;
    const uint8_t *p = buf + (size_t)i * TV_SLOT_SIZE + m[M_OFF];
    int32_t len = m[M_LEN];
    int v = p[0] >> 4;
    int ok = v == 4 ? len >= 20 && addr_in(p + 16, o4, n4, 4) : v == 6 && len >= 40 && addr_in(p + 24, o6, n6, 16);
    if (!ok) e->st[ST_NOT_FOR_ME]++;
    else if (sc->ndirect && !direct_source_ok(sc, &memo, m[M_SESSION], p, v)) e->st[ST_DIRECT_SPOOFED]++;
    else m[M_ACTION] = ACTION_TUN;
  }
  forward_batch(e, buf, meta, n, cap);
  return ctrl ? n | TV_PUMP_CONTROL : n;
}

/* tunPumpTo(buf, meta, session, outnet) -> packets read. session <= 0: drop them. */
napi_value Engine_tunPumpTo(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  tv_batch_arg b;
  int32_t session, outnet;
  if (argc < 4 || !arg_batch(env, argv, 0, &b) || !arg_i32(env, argv[2], "session", &session) ||
      !arg_i32(env, argv[3], "outnet", &outnet))
    return NULL;
  tv_shortcuts none = {0};
  return make_i32(env, tun_pump(e, b.buf, b.meta, b.cap, session, outnet, &none));
}

static int own_lists_fit(napi_env env, size_t l4, uint32_t n4, size_t l6, uint32_t n6) {
  if ((size_t)n4 * 4 <= l4 && (size_t)n6 * 16 <= l6) return 1;
  napi_throw_range_error(env, NULL, "own address count exceeds its array");
  return 0;
}

/* udpPumpLocal(buf, meta, addr, own4, n4, own6, n6) -> n | 0x10000
 * Receives and forwards batches (see udp_pump_batch). Stops after a batch holding CONTROL
 * slots and returns its n with bit 16 set: the caller handles those slots (still in the
 * batch, ACTION DROP). Otherwise returns the n of the last batch (< capacity: drained). */
napi_value Engine_udpPumpLocal(napi_env env, napi_callback_info info) {
  size_t argc = 7;
  napi_value argv[7];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  tv_batch_arg b;
  void *o4, *o6;
  size_t l4, l6;
  uint32_t n4, n6;
  if (argc < 7 || !arg_batch(env, argv, 1, &b) || !arg_typed(env, argv[3], napi_uint8_array, "own4", &o4, &l4) ||
      !arg_u32(env, argv[4], "n4", &n4) || !arg_typed(env, argv[5], napi_uint8_array, "own6", &o6, &l6) ||
      !arg_u32(env, argv[6], "n6", &n6) || !own_lists_fit(env, l4, n4, l6, n6))
    return NULL;
  int r = 0;
  tv_shortcuts none = {0};
  for (int k = 0; k < TV_PUMP_BATCHES && !e->closed; k++) {
    r = udp_pump_batch(e, b.buf, b.meta, b.addr, b.cap, o4, n4, o6, n6, &none);
    if ((r & TV_PUMP_CONTROL) || r < b.cap) break;
  }
  return make_i32(env, r);
}

/* ---------- the FullVR's cached routing (see verdict-cache.h) ---------- */

/* The verdict-cache key of DATA slot i: a TUN packet comes from "session -1" in no network
 * (JS decides those by source address alone). 0: not an IP packet. */
static int slot_key(const tv_pump *q, const uint8_t *buf, const int32_t *m, int i, tv_vc_key *k) {
  return tv_vc_key_of(k, q->udp ? m[M_SESSION] : -1, q->udp ? m[M_NETWORK] : 0, buf + (size_t)i * TV_SLOT_SIZE + m[M_OFF],
                      m[M_LEN]);
}

/* One batch: verdicts from the cache; a batch with a miss goes to JS (the callback gets n)
 * and JS decides all of it, flagging what may be cached; a batch holding control messages
 * calls JS once more after forwarding (the callback gets n | TV_PUMP_CONTROL).
 * Returns packets read, or -1 if JS stopped or replaced the pump. */
static int route_pump_batch(tv_poller *p, tv_pump *q) {
  tv_engine *e = p->ctx;
  uint8_t *buf = q->buf;
  int32_t *meta = q->meta;
  int cap = q->cap;
  int n = q->udp ? udp_read(e, buf, meta, q->addr, cap) : tun_read(e, buf, meta, cap);
  if (n <= 0) return 0;
  /* Taken before JS runs: what JS decides is cached under the state it started from, so
   * a change JS makes while deciding (a bumped generation) leaves those entries stale. */
  uint32_t gen = (uint32_t)q->cfg[0], epoch = e->session_epoch;
  int js = 0, control = 0;
  uint64_t routed = 0, relayed = 0;
  /* Segments of one GRO/TSO burst share a key: the entry that answered the slot before is
   * tried first, which spares the hash. */
  const tv_vc_entry *last = NULL;
  tv_vc_key k;
  for (int i = 0; i < n; i++) {
    int32_t *m = meta + (size_t)i * TV_META_FIELDS;
    int32_t kind = m[M_KIND];
    m[M_ACTION] = ACTION_DROP;
    if (kind == KIND_DATA) {
      const tv_vc_entry *x = NULL;
      if (slot_key(q, buf, m, i, &k))
        x = last && tv_vc_match(last, gen, epoch, &k) ? last : tv_vc_find(e->vc, gen, epoch, &k);
      if (!x) {
        js = 1;
        continue;
      }
      last = x;
      m[M_ACTION] = x->action;
      m[M_OUTNET] = x->outnet;
      if (x->relayed) relayed++;
      else routed++;
    } else if (kind == KIND_CONTROL || kind == KIND_KEEPALIVE || kind == -DR_UNKNOWN_SESSION) {
      js = control = 1;
    }
  }
  if (js) {
    e->st[ST_VC_JS_BATCHES]++;
    memset(q->flags, 0, (size_t)n);
    poller_invoke(p, n); /* JS decides every slot (and counts it), cache hits included */
    if (p->dead || p->pump != q) return -1;
    for (int i = 0; i < n; i++) {
      int32_t *m = meta + (size_t)i * TV_META_FIELDS;
      if (q->flags[i] && m[M_KIND] == KIND_DATA && m[M_ACTION] != ACTION_DROP && slot_key(q, buf, m, i, &k))
        tv_vc_put(e->vc, gen, epoch, &k, m[M_ACTION], m[M_OUTNET], q->flags[i] == 2);
    }
  } else {
    e->st[ST_VC_ROUTED] += routed;
    e->st[ST_VC_RELAYED] += relayed;
  }
  forward_batch(e, buf, meta, n, cap);
  if (control) {
    poller_invoke(p, n | TV_PUMP_CONTROL); /* control messages, ERROR answers: after forwarding, as before */
    if (p->dead || p->pump != q) return -1;
  }
  return n;
}

void pump_run(tv_poller *p) {
  tv_engine *e = p->ctx;
  tv_pump *q = p->pump;
  if (q->routed) {
    for (int k = 0; k < TV_PUMP_BATCHES && !e->closed; k++) {
      int r = route_pump_batch(p, q);
      if (r < 0 || r < q->cap) return;
    }
    return;
  }
  int32_t *cfg = q->cfg;
  if (!q->udp) {
    /* no JS runs in between: cfg holds */
    tv_shortcuts sc;
    sc_load(&sc, q);
    tun_pump(e, q->buf, q->meta, q->cap, cfg[0], cfg[1], &sc);
    return;
  }
  for (int k = 0; k < TV_PUMP_BATCHES && !e->closed; k++) {
    /* counts are re-checked on every batch: the JS callback may have written anything into cfg */
    uint32_t n4 = cfg[2] < 0 ? 0 : (uint32_t)cfg[2], n6 = cfg[3] < 0 ? 0 : (uint32_t)cfg[3];
    if ((size_t)n4 * 4 > q->l4) n4 = (uint32_t)(q->l4 / 4);
    if ((size_t)n6 * 16 > q->l6) n6 = (uint32_t)(q->l6 / 16);
    tv_shortcuts sc;
    sc_load(&sc, q);
    int r = udp_pump_batch(e, q->buf, q->meta, q->addr, q->cap, q->own4, n4, q->own6, n6, &sc);
    if (r & TV_PUMP_CONTROL) {
      r &= 0xffff;
      poller_invoke(p, r); /* JS handles the CONTROL slots before the batch is reused */
      if (p->dead || p->pump != q) return; /* JS stopped or replaced the pump: q may be gone */
    }
    if (r < q->cap) break;
  }
}

void pump_free(napi_env env, tv_pump *pump) {
  if (!pump) return;
  for (int i = 0; i < pump->nrefs; i++) napi_delete_reference(env, pump->refs[i]);
  free(pump);
}

/* Takes a typed array argument into the pump: its pointer, and a reference keeping it alive. */
static bool pump_hold(napi_env env, tv_pump *q, napi_value v, napi_typedarray_type want, const char *name,
                      void **data, size_t *count) {
  if (!arg_typed(env, v, want, name, data, count)) return false;
  if (napi_create_reference(env, v, 1, &q->refs[q->nrefs]) != napi_ok) {
    throw_napi(env, "napi_create_reference");
    return false;
  }
  q->nrefs++;
  return true;
}

/* The four native pumps, started by one constructor. Arguments, in this order:
 *   buf, meta, addr (UDP only), cfg, own4 + own6 (TinyVR UDP only), flags (router only),
 *   callback (all but the TinyVR's TUN pump).
 * pumpTunNative(buf, meta, cfg): TUN packets go to session cfg[0] with network cfg[1], or to
 *   the session of the longest of the cfg[4] shortcut routes that holds their destination
 *   (layout at TV_SC_BASE).
 * pumpUdpNative(buf, meta, addr, cfg, own4, own6, onControl): DATA for one of the cfg[2]
 *   IPv4 addresses in own4 or the cfg[3] IPv6 addresses in own6 goes to the TUN;
 *   onControl(n) runs only for a batch that holds CONTROL slots.
 * routeUdpNative(buf, meta, addr, cfg, flags, cb) / routeTunNative(buf, meta, cfg, flags, cb):
 *   forward what the verdict cache knows (valid while cfg[0], the generation JS bumps on every
 *   routing change, and the session epoch are unchanged); cb(n) for a batch with a miss (JS
 *   decides it all and sets flags[i] to 1 (routed) or 2 (relayed) for verdicts that may be
 *   cached), cb(n | PUMP_CONTROL) after forwarding a batch that held control messages.
 * From then on the engine runs the pump on every wake-up of that fd, without calling JS. */
static napi_value pump_start(napi_env env, napi_callback_info info, int udp, int routed) {
  static const char *const usage[2][2] = {
      {"pumpTunNative(buf, meta, cfg)", "pumpUdpNative(buf, meta, addr, cfg, own4, own6, onControl)"},
      {"routeTunNative(buf, meta, cfg, flags, cb)", "routeUdpNative(buf, meta, addr, cfg, flags, cb)"}};
  int own = udp && !routed, has_cb = udp || routed;
  size_t want = 3 + (size_t)udp + (own ? 2 : 0) + (size_t)routed + (size_t)has_cb, argc = 7;
  napi_value argv[7];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  if (argc < want) {
    napi_throw_type_error(env, NULL, usage[routed][udp]);
    return NULL;
  }
  tv_pump *q = calloc(1, sizeof *q);
  if (!q) return throw_sys(env, "pump", ENOMEM);
  q->udp = udp, q->routed = routed;
  void *bufv, *metav, *addrv = NULL, *cfgv, *o4 = NULL, *o6 = NULL, *flagsv = NULL;
  size_t bl, mc, al = (size_t)-1, cc, fl = 0;
  napi_value *a = argv;
  if (!pump_hold(env, q, *a++, napi_uint8_array, "buf", &bufv, &bl) ||
      !pump_hold(env, q, *a++, napi_int32_array, "meta", &metav, &mc) ||
      (udp && !pump_hold(env, q, *a++, napi_uint8_array, "addr", &addrv, &al)) ||
      !pump_hold(env, q, *a++, napi_int32_array, "cfg", &cfgv, &cc) ||
      (own && (!pump_hold(env, q, *a++, napi_uint8_array, "own4", &o4, &q->l4) ||
               !pump_hold(env, q, *a++, napi_uint8_array, "own6", &o6, &q->l6))) ||
      (routed && !pump_hold(env, q, *a++, napi_uint8_array, "flags", &flagsv, &fl))) {
    pump_free(env, q);
    return NULL;
  }
  q->buf = bufv, q->meta = metav, q->addr = addrv, q->cfg = cfgv, q->own4 = o4, q->own6 = o6, q->flags = flagsv;
  q->cfg_len = cc;
  q->cap = batch_cap(bl, mc, al);
  size_t need = routed ? 1 : udp ? 4 : 2; /* cfg entries the pump reads */
  const char *bad = cc < need ? (routed ? "cfg needs 1 entry" : udp ? "cfg needs 4 entries" : "cfg needs 2 entries")
                    : q->cap < 1 ? "batch has no slot"
                    : routed && fl < (size_t)q->cap ? "flags needs one byte per slot"
                    : NULL;
  if (bad) {
    pump_free(env, q);
    napi_throw_range_error(env, NULL, bad);
    return NULL;
  }
  napi_value cb = undefined(env);
  if (has_cb) {
    napi_valuetype t;
    cb = *a;
    if (napi_typeof(env, cb, &t) != napi_ok || t != napi_function) {
      pump_free(env, q);
      napi_throw_type_error(env, NULL, own ? "onControl must be a function" : "callback must be a function");
      return NULL;
    }
  }
  if (routed && !e->vc && !(e->vc = calloc(1, sizeof *e->vc))) {
    pump_free(env, q);
    return throw_sys(env, "verdict cache", ENOMEM);
  }
  return udp ? set_poller(env, e, &e->udp_poll, e->udp_fd, cb, "UDP", q)
             : set_poller(env, e, &e->tun_poll, e->tun_fd, cb, "TUN", q);
}

napi_value Engine_pumpTunNative(napi_env env, napi_callback_info info) { return pump_start(env, info, 0, 0); }
napi_value Engine_pumpUdpNative(napi_env env, napi_callback_info info) { return pump_start(env, info, 1, 0); }
napi_value Engine_routeUdpNative(napi_env env, napi_callback_info info) { return pump_start(env, info, 1, 1); }
napi_value Engine_routeTunNative(napi_env env, napi_callback_info info) { return pump_start(env, info, 0, 1); }
