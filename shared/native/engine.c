/* N-API surface of the packet engine: module functions (openTun, openUdp, closeFd,
 * monotonicMs) and the Engine class. The hot paths (udpRecv, tunRead, forward)
 * handle a whole batch per call and never allocate per packet. Offloads (TUN TSO
 * and coalescing, UDP GRO and GSO) stay below the per-slot contract: every packet
 * is still one slot with its own meta (docs/interfaces.md). */
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <sys/uio.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <linux/if_tun.h>

#include "crypto.h"
#include "mss.h"
#include "net.h"
#include "offload.h"
#include "replay.h"
#include "session.h"
#include "tv.h"
#include "verdict-cache.h"

enum {
  ST_RX_DATAGRAMS, ST_TX_DATAGRAMS, ST_TUN_RX, ST_TUN_TX, ST_MSS_CLAMPED,
  ST_SEND_ERRORS, ST_TUN_WRITE_ERRORS, ST_TUN_GSO_READS, ST_TUN_SEGMENTS, ST_TUN_COALESCED_WRITES,
  ST_TUN_OFFLOAD_ERRORS, ST_UDP_GRO_DATAGRAMS, ST_UDP_GSO_SENDS, ST_UDP_GSO_FALLBACKS,
  ST_UDP_GRO_DIRECT, ST_UDP_GRO_MISPREDICT, ST_NOT_FOR_ME, ST_VC_ROUTED, ST_VC_RELAYED, ST_VC_JS_BATCHES, ST_UDP_WAKEUPS, ST_TUN_WAKEUPS,
  ST_MOD_TICKS, ST_MOD_ENTRIES,
  ST_DROP_BASE, /* + DropReason (1..9) */
  ST_COUNT = ST_DROP_BASE + DR_COUNT
};

static const char *const stat_names[ST_COUNT] = {
  [ST_RX_DATAGRAMS] = "rx_datagrams",
  [ST_TX_DATAGRAMS] = "tx_datagrams",
  [ST_TUN_RX] = "tun_rx",
  [ST_TUN_TX] = "tun_tx",
  [ST_MSS_CLAMPED] = "mss_clamped",
  [ST_SEND_ERRORS] = "send_errors",
  [ST_TUN_WRITE_ERRORS] = "tun_write_errors",
  [ST_TUN_GSO_READS] = "tun_gso_reads",
  [ST_TUN_SEGMENTS] = "tun_segments",
  [ST_TUN_COALESCED_WRITES] = "tun_coalesced_writes",
  [ST_TUN_OFFLOAD_ERRORS] = "tun_offload_errors",
  [ST_UDP_GRO_DATAGRAMS] = "udp_gro_datagrams",
  [ST_UDP_GSO_SENDS] = "udp_gso_sends",
  [ST_UDP_GSO_FALLBACKS] = "udp_gso_fallbacks",
  [ST_UDP_GRO_DIRECT] = "udp_gro_direct",
  [ST_UDP_GRO_MISPREDICT] = "udp_gro_mispredict",
  [ST_NOT_FOR_ME] = "not_for_me",
  [ST_VC_ROUTED] = "cache_routed",
  [ST_VC_RELAYED] = "cache_relayed",
  [ST_VC_JS_BATCHES] = "js_batches",
  [ST_UDP_WAKEUPS] = "udp_wakeups",
  [ST_TUN_WAKEUPS] = "tun_wakeups",
  [ST_MOD_TICKS] = "moderation_ticks",
  [ST_MOD_ENTRIES] = "moderation_entries",
  [ST_DROP_BASE + DR_TRUNCATED] = "truncated",
  [ST_DROP_BASE + DR_BAD_VERSION] = "bad_version",
  [ST_DROP_BASE + DR_BAD_TYPE] = "bad_type",
  [ST_DROP_BASE + DR_UNKNOWN_SESSION] = "unknown_session",
  [ST_DROP_BASE + DR_BAD_MODE] = "bad_mode",
  [ST_DROP_BASE + DR_BAD_TAG] = "bad_tag",
  [ST_DROP_BASE + DR_REPLAY] = "replay",
  [ST_DROP_BASE + DR_HOP_LIMIT] = "hop_limit",
  [ST_DROP_BASE + DR_OVERSIZE] = "oversize",
};

typedef struct tv_poller {
  uv_poll_t handle;
  /* Runs the callback again on the next loop iteration while the engine holds data
   * back (rest of a GRO message or TSO super-packet): the fd may not be readable. */
  uv_idle_t idle;
  int open_handles, idling;
  napi_env env;
  napi_ref cb;
  napi_async_context actx;
  int in_cb; /* the JS callback is running: release must wait until it returns */
  int dead;  /* stopped while in_cb */
  int (*pending)(void *ctx);
  uint64_t (*progress)(void *ctx);
  void *ctx;
  struct tv_pump *pump; /* set: the engine forwards by itself; JS hears only of control messages */
  uint64_t *wakeups;    /* the engine's counter of poll wake-ups for this fd (packets per wake-up = rx / this) */
} tv_poller;

/* A native pump: the TinyVR's fixed decision run straight from the poll callback, so a
 * wake-up that only carries data never enters JS (V8's callback machinery was ~12 % of a
 * TinyVR's CPU at ping rates, and most of a cold wake-up's instructions). The arrays are
 * JS-owned; the references keep them alive while the pump holds their pointers. */
typedef struct tv_pump {
  int udp;                   /* 1: UDP socket, 0: TUN */
  int routed;                /* 1: a FullVR's cached routing (routeNative), 0: the TinyVR's fixed decision */
  napi_ref refs[6];
  int nrefs;
  uint8_t *buf, *addr, *own4, *own6;
  uint8_t *flags;            /* routed: per slot, what JS decided (0 do not cache, 1 routed, 2 relayed) */
  int32_t *meta, *cfg;       /* TinyVR cfg: [session, outnet, n4, n6, shortcuts, ...]; FullVR cfg: [generation] */
  size_t l4, l6, cfg_len;
  int cap;
} tv_pump;

static void pump_free(napi_env env, tv_pump *pump) {
  if (!pump) return;
  for (int i = 0; i < pump->nrefs; i++) napi_delete_reference(env, pump->refs[i]);
  free(pump);
}

#define TV_GRO_MSGS 8          /* bounce buffers for UDP GRO receive */
#define TV_GRO_BUF 65536       /* one GRO message: at most a 64 KB UDP payload */
#define TV_GSO_MAX_SEGS 64     /* datagrams per UDP_SEGMENT send */
#define TV_GSO_MAX_BYTES 65507 /* one UDP payload over IPv4 */
#define TV_TUN_RESERVE 64      /* free slots wanted before reading another TUN super-packet */

typedef union {
  char buf[CMSG_SPACE(sizeof(uint16_t))];
  struct cmsghdr align;
} tv_gso_ctrl;

typedef union {
  char buf[CMSG_SPACE(sizeof(int))];
  struct cmsghdr align;
} tv_gro_ctrl;

typedef struct {
  int udp_fd, tun_fd, family, mtu, closed;
  tv_session_table sessions;
  tv_poller *udp_poll, *tun_poll;
  /* Per-engine scratch for recvmmsg/sendmmsg, sized to the largest batch seen. */
  int scratch_cap;
  struct mmsghdr *msgs;
  struct iovec *iov;
  struct sockaddr_storage *names;
  tv_session **msg_sess;
  int *msg_segs;        /* datagrams in each message (UDP GSO) */
  tv_gso_ctrl *msg_ctrl;
  /* TUN offload: virtio_net_hdr length (0: plain TUN), the last read (kept while its
   * segments do not all fit the batch), and the coalescing state of forward(). */
  int tun_vnet;
  uint8_t *tun_rbuf;
  size_t tun_rlen;
  int tun_injected; /* test hook: tun_rbuf holds a packet not yet processed */
  tv_tso tso;
  int tso_active;
  tv_coalesce co;
  int co_active;
  uint8_t vnet_out[TV_VNET_HDR_MAX];
  /* UDP GRO receive: bounce buffers and the datagrams not yet handed out. */
  int udp_gro;
  uint8_t *gro_buf;
  struct mmsghdr gro_msgs[TV_GRO_MSGS];
  struct iovec gro_iov[TV_GRO_MSGS];
  struct sockaddr_storage gro_names[TV_GRO_MSGS];
  tv_gro_ctrl gro_ctrl[TV_GRO_MSGS];
  int gro_seg[TV_GRO_MSGS];
  int gro_n, gro_i;
  size_t gro_off;
  size_t gro_pred; /* predicted segment size for direct receive (0: unknown) */
  /* UDP GSO: usable, and proven (a send succeeded, so a later refusal is the path's). */
  int udp_gso, udp_gso_ok;
  /* Test hook: TUN writes are captured here ([u32 length][bytes]...) instead of written. */
  int tun_capture;
  uint8_t *cap_buf;
  size_t cap_len, cap_size;
  /* FullVR verdict cache (allocated by routeNative) and the session epoch its entries
   * are checked against: every session change may change a verdict. */
  tv_vcache *vc;
  uint32_t session_epoch;
  struct tv_moderator *mod; /* wake-up moderation (setModeration); NULL: off */
  uint64_t st[ST_COUNT];
} tv_engine;

/* ---------- helpers ---------- */

static double monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static const char *errno_code(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  return strerrorname_np(err);
#else
  (void)err;
  return NULL;
#endif
}

static napi_value throw_sys(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, errno_code(err), msg);
  return NULL;
}

static void throw_napi(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  char msg[256];
  snprintf(msg, sizeof msg, "%s failed: %s", what, info && info->error_message ? info->error_message : "N-API error");
  napi_throw_error(env, NULL, msg);
}

#define NAPI_CALL(env, call)        \
  do {                              \
    if ((call) != napi_ok) {        \
      throw_napi((env), #call);     \
      return NULL;                  \
    }                               \
  } while (0)

static napi_value make_i32(napi_env env, int32_t v) {
  napi_value r = NULL;
  napi_create_int32(env, v, &r);
  return r;
}

static napi_value undefined(napi_env env) {
  napi_value r = NULL;
  napi_get_undefined(env, &r);
  return r;
}

static bool set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  return napi_create_double(env, v, &n) == napi_ok && napi_set_named_property(env, obj, key, n) == napi_ok;
}

static bool arg_i32(napi_env env, napi_value v, const char *name, int32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a number", name);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  return napi_get_value_int32(env, v, out) == napi_ok;
}

static bool arg_u32(napi_env env, napi_value v, const char *name, uint32_t *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a number", name);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  return napi_get_value_uint32(env, v, out) == napi_ok;
}

static bool arg_str(napi_env env, napi_value v, const char *name, char *buf, size_t size) {
  size_t len = 0;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a string", name);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return false;
  if (len >= size) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s too long", name);
    napi_throw_range_error(env, NULL, msg);
    return false;
  }
  return napi_get_value_string_utf8(env, v, buf, size, &len) == napi_ok;
}

/* Typed array of the expected element type; the pointer already includes byteOffset. */
static bool arg_typed(napi_env env, napi_value v, napi_typedarray_type want, const char *name, void **data,
                      size_t *count) {
  bool is = false;
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &t, count, data, &ab, &off) != napi_ok || t != want) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a%s", name, want == napi_int32_array ? "n Int32Array" : " Buffer");
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  if (*count == 0) *data = NULL;
  return true;
}

static tv_engine *unwrap_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "not a native PacketEngine");
    return NULL;
  }
  return (tv_engine *)p;
}

static int ensure_scratch(tv_engine *e, int cap) {
  if (cap <= e->scratch_cap) return 0;
  struct mmsghdr *m = calloc((size_t)cap, sizeof *m);
  struct iovec *v = calloc((size_t)cap, sizeof *v);
  struct sockaddr_storage *n = calloc((size_t)cap, sizeof *n);
  tv_session **s = calloc((size_t)cap, sizeof *s);
  int *g = calloc((size_t)cap, sizeof *g);
  tv_gso_ctrl *c = calloc((size_t)cap, sizeof *c);
  if (!m || !v || !n || !s || !g || !c) {
    free(m); free(v); free(n); free(s); free(g); free(c);
    return -1;
  }
  free(e->msgs); free(e->iov); free(e->names); free(e->msg_sess); free(e->msg_segs); free(e->msg_ctrl);
  e->msgs = m; e->iov = v; e->names = n; e->msg_sess = s; e->msg_segs = g; e->msg_ctrl = c;
  e->scratch_cap = cap;
  return 0;
}

static void free_scratch(tv_engine *e) {
  free(e->msgs); free(e->iov); free(e->names); free(e->msg_sess); free(e->msg_segs); free(e->msg_ctrl);
  e->msgs = NULL; e->iov = NULL; e->names = NULL; e->msg_sess = NULL; e->msg_segs = NULL; e->msg_ctrl = NULL;
  e->scratch_cap = 0;
}

/* Waits up to 1 ms for send buffer space; bounded so a stuck peer cannot hang the loop. */
static void wait_writable(int fd) {
  struct pollfd pfd = {.fd = fd, .events = POLLOUT};
  (void)poll(&pfd, 1, 1);
}

#define SEND_RETRIES 3

static int send_one(tv_engine *e, const uint8_t *data, size_t len, const tv_endpoint *ep) {
  int tries = 0;
  for (;;) {
    ssize_t r = sendto(e->udp_fd, data, len, 0, &ep->sa.sa, ep->salen);
    if (r >= 0) {
      e->st[ST_TX_DATAGRAMS]++;
      return 0;
    }
    if (errno == EINTR) continue;
    if ((errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) && tries++ < SEND_RETRIES) {
      wait_writable(e->udp_fd);
      continue;
    }
    e->st[ST_SEND_ERRORS]++;
    return -1;
  }
}

/* A UDP_SEGMENT send the kernel refused: send its datagrams one by one. If GSO never
 * worked on this socket, the kernel or device lacks it: stop using it. Otherwise it
 * is this path (a datagram larger than its MTU, a device without checksum offload). */
static void gso_fallback(tv_engine *e, int j) {
  tv_session *s = e->msg_sess[j];
  struct msghdr *h = &e->msgs[j].msg_hdr;
  for (size_t k = 0; k < h->msg_iovlen; k++) {
    if (send_one(e, h->msg_iov[k].iov_base, h->msg_iov[k].iov_len, &s->ep) == 0) {
      s->tx_packets++;
      s->tx_bytes += h->msg_iov[k].iov_len;
    }
  }
  if (e->udp_gso_ok) s->no_gso = 1;
  else e->udp_gso = 0;
  e->st[ST_UDP_GSO_FALLBACKS]++;
}

/* Sends msgs[0..m) with as few sendmmsg calls as the kernel allows. A message the
 * kernel rejects is counted and skipped; a full buffer gets a few 1 ms waits. */
static void flush_udp(tv_engine *e, int m) {
  int sent = 0, tries = 0;
  while (sent < m) {
    int r = sendmmsg(e->udp_fd, e->msgs + sent, (unsigned)(m - sent), 0);
    if (r > 0) {
      for (int j = sent; j < sent + r; j++) {
        tv_session *s = e->msg_sess[j];
        s->tx_packets += (uint64_t)e->msg_segs[j];
        s->tx_bytes += e->msgs[j].msg_len;
        e->st[ST_TX_DATAGRAMS] += (uint64_t)e->msg_segs[j];
        if (e->msg_segs[j] > 1) {
          e->st[ST_UDP_GSO_SENDS]++;
          e->udp_gso_ok = 1;
        }
      }
      sent += r;
      tries = 0;
      continue;
    }
    if (r < 0 && errno == EINTR) continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
      if (tries++ < SEND_RETRIES) {
        wait_writable(e->udp_fd);
        continue;
      }
      for (int j = sent; j < m; j++) e->st[ST_SEND_ERRORS] += (uint64_t)e->msg_segs[j];
      return;
    }
    if (r < 0 && e->msg_segs[sent] > 1 && (errno == EINVAL || errno == EIO || errno == EMSGSIZE)) {
      gso_fallback(e, sent);
    } else {
      /* this one message failed (EMSGSIZE, unreachable, ...) */
      e->st[ST_SEND_ERRORS] += (uint64_t)e->msg_segs[sent];
    }
    sent++;
  }
}

/* ---------- pollers ---------- */

static void poller_closed(uv_handle_t *h) {
  tv_poller *p = h->data;
  if (--p->open_handles == 0) free(p);
}

static void poller_release(tv_poller *p) {
  pump_free(p->env, p->pump);
  p->pump = NULL;
  if (p->cb) napi_delete_reference(p->env, p->cb);
  if (p->actx) napi_async_destroy(p->env, p->actx);
  p->cb = NULL;
  p->actx = NULL;
  uv_close((uv_handle_t *)&p->handle, poller_closed);
  uv_close((uv_handle_t *)&p->idle, poller_closed);
}

static void poller_stop(tv_poller **pp) {
  tv_poller *p = *pp;
  *pp = NULL;
  if (!p) return;
  uv_poll_stop(&p->handle);
  uv_idle_stop(&p->idle);
  p->idling = 0;
  if (p->in_cb) p->dead = 1; /* the async context is in use by napi_make_callback */
  else poller_release(p);
}

/* Calls the JS callback; with arg >= 0 it gets that number as its argument. */
static void poller_invoke(tv_poller *p, int arg) {
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb = NULL, global, result, argv[1];
  if (p->cb && napi_get_reference_value(env, p->cb, &cb) == napi_ok && cb &&
      napi_get_global(env, &global) == napi_ok && (arg < 0 || napi_create_int32(env, arg, &argv[0]) == napi_ok)) {
    p->in_cb = 1;
    napi_status s = napi_make_callback(env, p->actx, global, cb, arg < 0 ? 0 : 1, argv, &result);
    p->in_cb = 0;
    if (s == napi_pending_exception) {
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void on_idle(uv_idle_t *h);
static void pump_run(tv_poller *p); /* with the fused pumps below */
static void mod_after_wake(tv_engine *e, uint64_t got);
static uint64_t engine_units(tv_engine *e);

static void poller_dispatch(tv_poller *p) {
  if (p->pump) pump_run(p);
  else poller_invoke(p, -1);
}

/* Keeps the idle handle running only while data is held back and the callback
 * consumes it (a callback that does not read must not make the loop spin). */
static void poller_after(tv_poller *p, uint64_t before, int from_idle) {
  if (p->dead) {
    poller_release(p);
    return;
  }
  int want = p->pending(p->ctx) && (!from_idle || p->progress(p->ctx) != before);
  if (want && !p->idling) uv_idle_start(&p->idle, on_idle);
  else if (!want && p->idling) uv_idle_stop(&p->idle);
  p->idling = want;
}

/* Runs the poller once, as on a wake-up (from the idle handle: from_idle). May release p. */
static void poller_wake(tv_poller *p, int from_idle) {
  uint64_t before = p->progress(p->ctx);
  poller_dispatch(p);
  poller_after(p, before, from_idle);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status; /* on error libuv has stopped the handle; still let JS drain the fd once */
  (void)events;
  tv_poller *p = (tv_poller *)h->data;
  tv_engine *e = p->ctx;
  (*p->wakeups)++;
  uint64_t units = engine_units(e);
  poller_wake(p, 0);
  mod_after_wake(e, engine_units(e) - units);
}

static void on_idle(uv_idle_t *h) { poller_wake((tv_poller *)h->data, 1); }

/* ---------- wake-up moderation ----------
 * On a VM, a process woken from epoll costs tens of µs (scheduler plus the hypervisor's
 * halt exit): at 1 Gbit/s that is more than handling the ~30 packets a wake-up brings,
 * and each send wakes the next router too. Like a NIC's adaptive interrupt moderation:
 * when wake-ups come densely, each brings little, and the packet rate is that of a bulk
 * transfer, stop polling the data fds and drain them from a timer every `us` µs instead.
 * Leave when the rate leaves that band: below it (the transfer ended: an idle path, a
 * ping, request/response traffic pay nothing) or above it (at full load the batches are
 * large anyway, and the added delay would cost a TCP sender's throughput where RTTs are
 * short). While moderated a packet waits at most `us` longer. */
#define TV_MOD_LIGHT 64                 /* a wake-up bringing fewer packets + datagrams may start moderation */
#define TV_MOD_MIN_RATE 40000           /* packets + datagrams per second below which it ends (~450 Mbit/s of full */
                                        /* packets: a request/response flow at a few thousand per second stays prompt) */
#define TV_MOD_MAX_RATE 150000          /* and above which it ends (~1.7 Gbit/s) */
#define TV_MOD_WINDOW_NS 2000000ull     /* the rate is measured over 2 ms windows (bursts average out) */

typedef struct tv_moderator {
  uv_poll_t handle; /* on the timerfd */
  int tfd;
  int us;
  int active;       /* the data fds are not polled; the timer drains them */
  uint64_t wake[2]; /* the two previous wake-ups (ns, CLOCK_MONOTONIC) */
  uint64_t win_start, win_units; /* the current rate window: start, engine_units() then */
  uint64_t rate;    /* packets + datagrams per second in the last complete window */
  tv_engine *e;     /* NULL once the engine let go of it */
} tv_moderator;

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t engine_units(tv_engine *e) { return e->st[ST_RX_DATAGRAMS] + e->st[ST_TUN_RX]; }

/* Periodic while moderated: a tick costs no timer syscall besides the read. */
static int mod_arm(tv_moderator *m) {
  struct timespec t = {m->us / 1000000, (long)(m->us % 1000000) * 1000};
  struct itimerspec it = {t, t};
  return timerfd_settime(m->tfd, 0, &it, NULL);
}

static void mod_set_polls(tv_engine *e, int on) {
  tv_poller *ps[2] = {e->udp_poll, e->tun_poll};
  for (int i = 0; i < 2; i++) {
    if (!ps[i] || ps[i]->dead) continue;
    if (on) uv_poll_start(&ps[i]->handle, UV_READABLE, on_poll);
    else uv_poll_stop(&ps[i]->handle);
  }
}

static void mod_leave(tv_moderator *m) {
  if (!m->active) return;
  m->active = 0;
  m->wake[0] = m->wake[1] = 0;
  struct itimerspec off = {{0, 0}, {0, 0}};
  timerfd_settime(m->tfd, 0, &off, NULL);
  if (m->e && !m->e->closed) mod_set_polls(m->e, 1);
}

static void mod_measure(tv_moderator *m, tv_engine *e, uint64_t now) {
  uint64_t span = now - m->win_start;
  if (span < TV_MOD_WINDOW_NS) return;
  uint64_t units = engine_units(e);
  /* a window much longer than one (the path was idle) says nothing about the rate now */
  m->rate = span > 4 * TV_MOD_WINDOW_NS ? 0 : (units - m->win_units) * 1000000000ull / span;
  m->win_start = now;
  m->win_units = units;
}

/* After a data wake-up that read `got` packets + datagrams. */
static void mod_after_wake(tv_engine *e, uint64_t got) {
  tv_moderator *m = e->mod;
  if (!m || m->active || e->closed) return;
  uint64_t now = mono_ns();
  int dense = now - m->wake[0] < 2ull * 1000ull * (uint64_t)m->us; /* 3 wake-ups within 2 ticks */
  m->wake[0] = m->wake[1];
  m->wake[1] = now;
  mod_measure(m, e, now);
  if (!dense || got >= TV_MOD_LIGHT || m->rate < TV_MOD_MIN_RATE || m->rate > TV_MOD_MAX_RATE || mod_arm(m) < 0) return;
  m->active = 1;
  e->st[ST_MOD_ENTRIES]++;
  mod_set_polls(e, 0);
}

static void on_mod_timer(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  tv_moderator *m = h->data;
  uint64_t expirations;
  if (read(m->tfd, &expirations, sizeof expirations) < 0 && errno == EAGAIN) return;
  tv_engine *e = m->e;
  if (!e || e->closed || !m->active) return;
  e->st[ST_MOD_TICKS]++;
  /* each may be released inside, and JS may close the engine: re-read before each */
  if (e->udp_poll && !e->udp_poll->dead) poller_wake(e->udp_poll, 0);
  if (m->e && !e->closed && e->tun_poll && !e->tun_poll->dead) poller_wake(e->tun_poll, 0);
  if (!m->e || e->closed) return;
  mod_measure(m, e, mono_ns());
  if (m->rate < TV_MOD_MIN_RATE || m->rate > TV_MOD_MAX_RATE) mod_leave(m);
}

static void mod_closed(uv_handle_t *h) {
  tv_moderator *m = h->data;
  close(m->tfd);
  free(m);
}

/* Turns moderation off: the data fds are polled again; the handle closes asynchronously. */
static void mod_stop(tv_engine *e) {
  tv_moderator *m = e->mod;
  if (!m) return;
  mod_leave(m);
  e->mod = NULL;
  m->e = NULL;
  uv_poll_stop(&m->handle);
  uv_close((uv_handle_t *)&m->handle, mod_closed);
}

static int udp_pending(void *ctx) {
  tv_engine *e = ctx;
  return !e->closed && e->gro_i < e->gro_n;
}
static uint64_t udp_progress(void *ctx) { return ((tv_engine *)ctx)->st[ST_RX_DATAGRAMS]; }
static int tun_pending(void *ctx) {
  tv_engine *e = ctx;
  return !e->closed && e->tso_active;
}
static uint64_t tun_progress(void *ctx) { return ((tv_engine *)ctx)->st[ST_TUN_RX]; }

/* Starts (or retargets) polling fd. cb: the JS callback, run on every wake-up, or with a
 * pump only when a batch holds control messages (then it may be undefined). The poller
 * owns the pump from here on, also on error. */
static napi_value set_poller(napi_env env, tv_engine *e, tv_poller **pp, int fd, napi_value cb, const char *what,
                             tv_pump *pump) {
  napi_ref ref = NULL;
  tv_poller *p = NULL;
  uv_loop_t *loop;
  char msg[128];
  napi_valuetype t;
  if (napi_typeof(env, cb, &t) != napi_ok) {
    throw_napi(env, "napi_typeof");
    goto fail;
  }
  int nullish = t == napi_undefined || t == napi_null;
  if (!pump && nullish) {
    poller_stop(pp);
    return undefined(env);
  }
  if (t != napi_function && !nullish) {
    napi_throw_type_error(env, NULL, "callback must be a function");
    goto fail;
  }
  if (e->closed || fd < 0) {
    if (e->closed) snprintf(msg, sizeof msg, "PacketEngine is closed");
    else snprintf(msg, sizeof msg, "PacketEngine has no %s fd", what);
    napi_throw_error(env, NULL, msg);
    goto fail;
  }
  if (!nullish && napi_create_reference(env, cb, 1, &ref) != napi_ok) {
    throw_napi(env, "napi_create_reference");
    goto fail;
  }
  if (*pp) { /* just swap the callback and the pump */
    if ((*pp)->cb) napi_delete_reference(env, (*pp)->cb);
    (*pp)->cb = ref;
    pump_free(env, (*pp)->pump);
    (*pp)->pump = pump;
    return undefined(env);
  }
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    throw_napi(env, "napi_get_uv_event_loop");
    goto fail;
  }
  if (!(p = calloc(1, sizeof *p))) {
    throw_sys(env, "poller", ENOMEM);
    goto fail;
  }
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r != 0) {
    snprintf(msg, sizeof msg, "uv_poll_init(%s): %s", what, uv_strerror(r));
    napi_throw_error(env, uv_err_name(r), msg);
    goto fail;
  }
  /* from here on the poller owns ref and pump (poller_release frees them) */
  p->env = env;
  p->cb = ref;
  p->pump = pump;
  p->handle.data = p;
  uv_idle_init(loop, &p->idle); /* cannot fail */
  p->idle.data = p;
  p->open_handles = 2;
  int is_tun = pp == &e->tun_poll;
  p->pending = is_tun ? tun_pending : udp_pending;
  p->progress = is_tun ? tun_progress : udp_progress;
  p->wakeups = &e->st[is_tun ? ST_TUN_WAKEUPS : ST_UDP_WAKEUPS];
  p->ctx = e;
  napi_value resource, name;
  if (napi_create_object(env, &resource) != napi_ok ||
      napi_create_string_utf8(env, "TinyVinePoll", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, resource, name, &p->actx) != napi_ok) {
    poller_release(p);
    throw_napi(env, "napi_async_init");
    return NULL;
  }
  r = uv_poll_start(&p->handle, UV_READABLE, on_poll);
  if (r != 0) {
    poller_release(p);
    snprintf(msg, sizeof msg, "uv_poll_start(%s): %s", what, uv_strerror(r));
    napi_throw_error(env, uv_err_name(r), msg);
    return NULL;
  }
  *pp = p;
  return undefined(env);
fail: /* nothing started yet: the pump and the reference are ours to free */
  if (ref) napi_delete_reference(env, ref);
  pump_free(env, pump);
  free(p);
  return NULL;
}

/* ---------- engine lifecycle ---------- */

static void engine_shutdown(tv_engine *e) {
  if (e->closed) return;
  e->closed = 1;
  mod_stop(e);
  poller_stop(&e->udp_poll);
  poller_stop(&e->tun_poll);
  if (e->udp_fd >= 0) close(e->udp_fd);
  if (e->tun_fd >= 0) close(e->tun_fd); /* closing a non-persistent TUN deletes it */
  e->udp_fd = e->tun_fd = -1;
  tv_sessions_free(&e->sessions); /* cleanses key material now rather than at GC */
  free_scratch(e);
  free(e->tun_rbuf);
  free(e->gro_buf);
  free(e->cap_buf);
  free(e->vc);
  e->vc = NULL;
  e->tun_rbuf = e->gro_buf = e->cap_buf = NULL;
  e->tso_active = e->co_active = 0;
  e->gro_n = e->gro_i = 0;
}

static void engine_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  (void)hint;
  tv_engine *e = data;
  engine_shutdown(e);
  free(e);
}

static bool set_nonblock(int fd) {
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) return false;
  return (fl & O_NONBLOCK) || fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

/* virtio_net_hdr length the TUN fd uses (0: none); -1 if the fd is not a TUN. */
static int tun_vnet_len(int fd) {
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  if (ioctl(fd, TUNGETIFF, &ifr) < 0) return -1;
  if (!(ifr.ifr_flags & IFF_VNET_HDR)) return 0;
  int sz = 0;
  if (ioctl(fd, TUNGETVNETHDRSZ, &sz) < 0) return -1;
  return sz;
}

static int sockopt_udp(int fd, int opt) {
  int v = 0;
  socklen_t l = sizeof v;
  return getsockopt(fd, SOL_UDP, opt, &v, &l) < 0 ? -1 : v;
}

/* new Engine(udpFd, tunFd (-1: none), mtu, tunOffload (-1 detect, 0, 1), udpGso (0, 1)).
 * Takes ownership of both fds. UDP GRO is whatever the socket has (see openUdp). */
static napi_value Engine_new(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5], self, target;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  NAPI_CALL(env, napi_get_new_target(env, info, &target));
  if (!target) {
    napi_throw_type_error(env, NULL, "Engine must be called with new");
    return NULL;
  }
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "Engine(udpFd, tunFd, mtu[, tunOffload, udpGso])");
    return NULL;
  }
  int32_t udp_fd, tun_fd, mtu, tun_offload = -1, udp_gso = 1;
  if (!arg_i32(env, argv[0], "udpFd", &udp_fd) || !arg_i32(env, argv[1], "tunFd", &tun_fd) ||
      !arg_i32(env, argv[2], "mtu", &mtu) || (argc > 3 && !arg_i32(env, argv[3], "tunOffload", &tun_offload)) ||
      (argc > 4 && !arg_i32(env, argv[4], "udpGso", &udp_gso)))
    return NULL;
  if (mtu < TV_MIN_MTU || mtu > TV_MAX_MTU) {
    char msg[64];
    snprintf(msg, sizeof msg, "mtu must be %d..%d", TV_MIN_MTU, TV_MAX_MTU);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  int family = tv_socket_family(udp_fd);
  if (family < 0) return throw_sys(env, "udpFd", errno);
  int type = 0;
  socklen_t tl = sizeof type;
  if ((family != AF_INET && family != AF_INET6) || getsockopt(udp_fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
      type != SOCK_DGRAM) {
    napi_throw_type_error(env, NULL, "udpFd is not an IPv4/IPv6 UDP socket");
    return NULL;
  }
  /* The fd decides whether reads carry a virtio_net_hdr; a wrong guess would corrupt
   * every packet, so a contradicting tunOffload is an error. */
  int vnet = 0;
  if (tun_fd >= 0) {
    int v = tun_vnet_len(tun_fd);
    if (v > 0) vnet = v;
    if (v > 0 && tun_offload == 0) {
      napi_throw_type_error(env, NULL, "the TUN fd has IFF_VNET_HDR: pass tunOffload: true");
      return NULL;
    }
    if (v <= 0 && tun_offload == 1) {
      napi_throw_type_error(env, NULL, "tunOffload: the TUN fd has no virtio-net header (openTun(name, { offload: true }) reported offload: false?)");
      return NULL;
    }
  } else if (tun_offload == 1) {
    vnet = TV_VNET_HDR_LEN; /* no TUN: test hooks inject reads and capture writes */
  }
  if (vnet != 0 && vnet != TV_VNET_HDR_LEN && vnet != TV_VNET_HDR_MAX) {
    napi_throw_type_error(env, NULL, "unsupported TUN vnet header size (want 10 or 12)");
    return NULL;
  }
  if (!set_nonblock(udp_fd)) return throw_sys(env, "udpFd", errno);
  if (tun_fd >= 0 && !set_nonblock(tun_fd)) return throw_sys(env, "tunFd", errno);
  tv_engine *e = calloc(1, sizeof *e);
  if (!e) return throw_sys(env, "PacketEngine", ENOMEM);
  e->udp_fd = udp_fd;
  e->tun_fd = tun_fd < 0 ? -1 : tun_fd;
  e->family = family;
  e->mtu = mtu;
  e->tun_vnet = vnet;
  e->udp_gro = sockopt_udp(udp_fd, UDP_GRO) > 0;
  e->udp_gso = udp_gso && sockopt_udp(udp_fd, UDP_SEGMENT) >= 0;
  if ((vnet && !(e->tun_rbuf = malloc(TV_TUN_READ_MAX))) || (e->udp_gro && !(e->gro_buf = malloc((size_t)TV_GRO_MSGS * TV_GRO_BUF)))) {
    free(e->tun_rbuf);
    free(e);
    return throw_sys(env, "PacketEngine", ENOMEM);
  }
  if (napi_wrap(env, self, e, engine_finalize, NULL, NULL) != napi_ok) {
    free(e->tun_rbuf);
    free(e->gro_buf);
    free(e);
    throw_napi(env, "napi_wrap");
    return NULL;
  }
  return self;
}

static napi_value Engine_close(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  tv_engine *e = unwrap_this(env, info, &argc, NULL);
  if (!e) return NULL;
  engine_shutdown(e);
  return undefined(env);
}

/* ---------- sessions ---------- */

static bool parse_peer(napi_env env, tv_engine *e, napi_value vhost, napi_value vport, tv_endpoint *ep) {
  char host[128];
  int32_t port;
  if (!arg_str(env, vhost, "peerHost", host, sizeof host) || !arg_i32(env, vport, "peerPort", &port)) return false;
  if (port < 0 || port > 65535) {
    napi_throw_range_error(env, NULL, "peerPort must be 0..65535");
    return false;
  }
  uint8_t ip[16];
  uint32_t scope;
  if (!tv_parse_host(host, ip, &scope)) {
    char msg[192];
    snprintf(msg, sizeof msg, "invalid IP address '%s'", host);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  if (tv_endpoint_set(ep, e->family, ip, scope, (uint16_t)port) < 0) {
    char msg[192];
    snprintf(msg, sizeof msg, "cannot reach IPv6 peer %s from an IPv4 socket", host);
    napi_throw_error(env, "EAFNOSUPPORT", msg);
    return false;
  }
  return true;
}

static bool arg_index(napi_env env, napi_value v, uint32_t *out) {
  int32_t i;
  if (!arg_i32(env, v, "index", &i)) return false;
  if (i < 1 || i > TV_MAX_SESSION) {
    napi_throw_range_error(env, NULL, "session index must be 1..65535");
    return false;
  }
  *out = (uint32_t)i;
  return true;
}

/* setSession(index, peerHost, peerPort, remoteIndex, senderId, mode, txKey, rxKey) */
static napi_value Engine_setSession(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  if (argc < 8) {
    napi_throw_type_error(env, NULL, "setSession: 8 arguments expected");
    return NULL;
  }
  if (e->closed) {
    napi_throw_error(env, NULL, "PacketEngine is closed");
    return NULL;
  }
  uint32_t index, remote_index, sender_id;
  int32_t mode;
  tv_endpoint ep;
  if (!arg_index(env, argv[0], &index) || !parse_peer(env, e, argv[1], argv[2], &ep) ||
      !arg_u32(env, argv[3], "remoteIndex", &remote_index) || !arg_u32(env, argv[4], "senderId", &sender_id) ||
      !arg_i32(env, argv[5], "mode", &mode))
    return NULL;
  if (mode < AUTH_NONE || mode > AUTH_GMAC) {
    napi_throw_range_error(env, NULL, "mode must be 0..3");
    return NULL;
  }
  void *txk, *rxk;
  size_t txl, rxl;
  if (!arg_typed(env, argv[6], napi_uint8_array, "txKey", &txk, &txl) ||
      !arg_typed(env, argv[7], napi_uint8_array, "rxKey", &rxk, &rxl))
    return NULL;
  if (mode != AUTH_NONE && (txl != TV_KEY_LEN || rxl != TV_KEY_LEN)) {
    napi_throw_range_error(env, NULL, "txKey and rxKey must be 32 bytes");
    return NULL;
  }
  tv_session *s = calloc(1, sizeof *s);
  if (!s) return throw_sys(env, "setSession", ENOMEM);
  s->index = index;
  s->remote_index = remote_index;
  s->sender_id = sender_id;
  s->mode = mode;
  s->ep = ep;
  tv_replay_reset(&s->replay);
  if (tv_key_init(&s->tx, mode, txk, txl, 1) < 0 || tv_key_init(&s->rx, mode, rxk, rxl, 0) < 0) {
    tv_session_free(s);
    napi_throw_error(env, NULL, "setSession: cipher initialisation failed");
    return NULL;
  }
  if (tv_session_put(&e->sessions, s) < 0) {
    int err = errno;
    tv_session_free(s);
    return throw_sys(env, "setSession", err);
  }
  e->session_epoch++; /* cached verdicts may name this index */
  return undefined(env);
}

static napi_value Engine_setSessionEndpoint(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  uint32_t index;
  tv_endpoint ep;
  if (argc < 3 || !arg_index(env, argv[0], &index) || !parse_peer(env, e, argv[1], argv[2], &ep)) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_type_error(env, NULL, "setSessionEndpoint(index, host, port)");
    return NULL;
  }
  tv_session *s = tv_session_get(&e->sessions, index);
  if (!s) {
    char msg[64];
    snprintf(msg, sizeof msg, "no session %u", index);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  s->ep = ep;
  s->no_gso = 0;
  return undefined(env);
}

/* setMtu(mtu): the TinyVR learns its tunnel MTU from the join answer, after the engine exists. */
static napi_value Engine_setMtu(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  int32_t mtu;
  if (argc < 1 || !arg_i32(env, argv[0], "mtu", &mtu)) return NULL;
  if (mtu < TV_MIN_MTU || mtu > TV_MAX_MTU) {
    char msg[64];
    snprintf(msg, sizeof msg, "mtu must be %d..%d", TV_MIN_MTU, TV_MAX_MTU);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  e->mtu = mtu;
  return undefined(env);
}

static napi_value Engine_deleteSession(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  uint32_t index;
  if (argc < 1 || !arg_index(env, argv[0], &index)) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_type_error(env, NULL, "deleteSession(index)");
    return NULL;
  }
  tv_session_delete(&e->sessions, index);
  e->session_epoch++;
  return undefined(env);
}

/* The engine of a method taking one int32 argument, and that argument; NULL (a JS
 * exception pending) if either is missing or wrong. */
static tv_engine *engine_and_i32(napi_env env, napi_callback_info info, const char *usage, const char *name, int32_t *out) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  if (argc < 1) {
    napi_throw_type_error(env, NULL, usage);
    return NULL;
  }
  return arg_i32(env, argv[0], name, out) ? e : NULL;
}

static napi_value Engine_sessionInfo(napi_env env, napi_callback_info info) {
  int32_t index;
  tv_engine *e = engine_and_i32(env, info, "sessionInfo(index)", "index", &index);
  if (!e) return NULL;
  tv_session *s = tv_session_get(&e->sessions, index);
  napi_value obj, host;
  if (!s) {
    NAPI_CALL(env, napi_get_null(env, &obj));
    return obj;
  }
  char hs[INET6_ADDRSTRLEN];
  tv_format_ip(s->ep.ip, hs, sizeof hs);
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_string_utf8(env, hs, NAPI_AUTO_LENGTH, &host));
  if (!set_num(env, obj, "lastRxMs", s->last_rx_ms) || !set_num(env, obj, "rxPackets", (double)s->rx_packets) ||
      !set_num(env, obj, "rxBytes", (double)s->rx_bytes) || !set_num(env, obj, "txPackets", (double)s->tx_packets) ||
      !set_num(env, obj, "txBytes", (double)s->tx_bytes) ||
      napi_set_named_property(env, obj, "peerHost", host) != napi_ok ||
      !set_num(env, obj, "peerPort", s->ep.port)) {
    throw_napi(env, "sessionInfo");
    return NULL;
  }
  return obj;
}

/* ---------- receive ---------- */

static void fill_meta(int32_t *m, int32_t len, int32_t kind, int32_t off) {
  m[M_LEN] = len;
  m[M_KIND] = kind;
  m[M_SESSION] = 0;
  m[M_NETWORK] = 0;
  m[M_OFF] = off;
  m[M_ACTION] = ACTION_DROP;
  m[M_OUTNET] = 0;
  m[M_SENDER] = 0;
  m[M_HOPS] = 0;
  m[M_TYPE] = 0;
}

/* Returns 0 (meta filled for an accepted datagram) or a DropReason. */
static int classify(tv_engine *e, uint8_t *d, size_t len, int truncated, const uint8_t ip[16], uint16_t port,
                    uint32_t scope, int32_t *m, double now) {
  if (truncated) return DR_OVERSIZE;
  if (len < TV_HEADER_LEN) return DR_TRUNCATED;
  if (d[0] != TV_VERSION) return DR_BAD_VERSION;
  uint8_t type = d[1];
  if (type < T_DATA || type > T_QUEUE) return DR_BAD_TYPE;
  uint32_t ridx = tv_rd32(d + 4);
  m[M_TYPE] = type;
  m[M_HOPS] = d[3];
  m[M_SESSION] = (int32_t)ridx;
  m[M_SENDER] = (int32_t)tv_rd32(d + 8);
  m[M_NETWORK] = m[M_OUTNET] = (int32_t)tv_rd32(d + 12);
  if (d[3] > TV_MAX_HOPS) return DR_HOP_LIMIT;
  if ((d[2] & ~7) || (d[2] & 7) > AUTH_GMAC) return DR_BAD_MODE;
  int mode = d[2] & 7;
  if (type != T_DATA && type != T_KEEPALIVE) {
    /* INIT/RESP/ERROR (and reserved QUEUE) go to the control plane raw. */
    if (mode != AUTH_NONE) return DR_BAD_MODE;
    m[M_KIND] = KIND_CONTROL;
    return 0;
  }
  tv_session *s = tv_session_get(&e->sessions, ridx);
  if (!s) return DR_UNKNOWN_SESSION;
  if (mode != s->mode) return DR_BAD_MODE;
  size_t taglen = mode == AUTH_NONE ? 0 : TV_TAG_LEN;
  if (len < TV_HEADER_LEN + taglen) return DR_TRUNCATED;
  size_t plen = len - TV_HEADER_LEN - taglen;
  if (type == T_DATA && plen == 0) return DR_TRUNCATED;
  uint64_t ctr = tv_rd64(d + 16);
  /* Cheap check first so replays cost no crypto; the window moves only after the tag verified. */
  if (!tv_replay_check(&s->replay, ctr)) return DR_REPLAY;
  if (!tv_open(&s->rx, d, plen)) return DR_BAD_TAG;
  if (!tv_replay_update(&s->replay, ctr)) return DR_REPLAY;
  if (port != s->ep.port || memcmp(ip, s->ep.ip, 16) != 0) {
    tv_endpoint_set(&s->ep, e->family, ip, scope, port);
    s->no_gso = 0; /* new path */
  }
  s->last_rx_ms = now;
  s->rx_packets++;
  s->rx_bytes += len;
  m[M_KIND] = type == T_DATA ? KIND_DATA : KIND_KEEPALIVE;
  m[M_LEN] = (int32_t)plen;
  m[M_OFF] = TV_HEADROOM;
  m[M_SESSION] = (int32_t)s->index;
  return 0;
}

static int batch_cap(size_t buf_len, size_t meta_count, size_t addr_len) {
  size_t cap = buf_len / TV_SLOT_SIZE;
  if (meta_count / TV_META_FIELDS < cap) cap = meta_count / TV_META_FIELDS;
  if (addr_len != (size_t)-1 && addr_len / TV_ADDR_STRIDE < cap) cap = addr_len / TV_ADDR_STRIDE;
  if (cap > TV_MAX_BATCH) cap = TV_MAX_BATCH;
  return (int)cap;
}

/* A batch passed as its arrays: buf, meta and, with_addr, addr (argv[0..2]) -> the arrays
 * and the slots they hold in common; false with a JS exception pending. */
typedef struct {
  uint8_t *buf, *addr;
  int32_t *meta;
  int cap;
} tv_batch_arg;

static bool arg_batch(napi_env env, napi_value *argv, int with_addr, tv_batch_arg *b) {
  void *buf, *meta, *addr = NULL;
  size_t bl, mc, al = (size_t)-1;
  if (!arg_typed(env, argv[0], napi_uint8_array, "buf", &buf, &bl) || !arg_typed(env, argv[1], napi_int32_array, "meta", &meta, &mc) ||
      (with_addr && !arg_typed(env, argv[2], napi_uint8_array, "addr", &addr, &al)))
    return false;
  b->buf = buf, b->meta = meta, b->addr = addr, b->cap = batch_cap(bl, mc, al);
  return true;
}

/* Fills slot meta/addr for one received datagram at d (slot + HEADROOM - HEADER_LEN). */
static void rx_datagram(tv_engine *e, uint8_t *d, size_t len, int truncated, const struct sockaddr_storage *from,
                        int32_t *m, uint8_t *a, double now) {
  uint8_t ip[16];
  uint16_t port;
  uint32_t scope;
  tv_sockaddr_to_ip(from, ip, &port, &scope);
  memcpy(a, ip, 16);
  tv_wr16(a + 16, port);
  a[18] = a[19] = 0;
  fill_meta(m, (int32_t)len, 0, TV_HEADROOM - TV_HEADER_LEN);
  int reason = classify(e, d, len, truncated, ip, port, scope, m, now);
  if (reason) {
    m[M_KIND] = -reason;
    m[M_LEN] = (int32_t)len;
    m[M_OFF] = TV_HEADROOM - TV_HEADER_LEN;
    e->st[ST_DROP_BASE + reason]++;
  }
}

#define RX_ROOM ((size_t)(TV_SLOT_SIZE - (TV_HEADROOM - TV_HEADER_LEN)))

static int udp_recv(tv_engine *e, uint8_t *buf, int32_t *meta, uint8_t *addr, int cap) {
  if (e->closed || cap <= 0 || ensure_scratch(e, cap) < 0) return 0;
  for (int i = 0; i < cap; i++) {
    e->iov[i].iov_base = buf + (size_t)i * TV_SLOT_SIZE + TV_HEADROOM - TV_HEADER_LEN;
    e->iov[i].iov_len = RX_ROOM;
    struct msghdr *h = &e->msgs[i].msg_hdr;
    h->msg_name = &e->names[i];
    h->msg_namelen = sizeof e->names[i];
    h->msg_iov = &e->iov[i];
    h->msg_iovlen = 1;
    h->msg_control = NULL;
    h->msg_controllen = 0;
    h->msg_flags = 0;
  }
  int r;
  do r = recvmmsg(e->udp_fd, e->msgs, (unsigned)cap, MSG_DONTWAIT, NULL);
  while (r < 0 && errno == EINTR);
  if (r <= 0) return 0;
  double now = monotonic_ms();
  for (int i = 0; i < r; i++) {
    rx_datagram(e, buf + (size_t)i * TV_SLOT_SIZE + TV_HEADROOM - TV_HEADER_LEN, e->msgs[i].msg_len,
                (e->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0, &e->names[i], meta + (size_t)i * TV_META_FIELDS,
                addr + (size_t)i * TV_ADDR_STRIDE, now);
  }
  e->st[ST_RX_DATAGRAMS] += (uint64_t)r;
  return r;
}

/* UDP GRO: a message may hold many datagrams (gso_size each, the last one shorter), each
 * verified on its own in its own slot. Two ways in:
 * - direct: with a predicted segment size (the last one seen), each message gets a run of
 *   slots, one iov of exactly that size per slot, so the kernel's copy puts every datagram
 *   straight into its slot. A message's unused slots are skipped: slot i's datagram may then
 *   sit in a later slot's region, which its OFF says (OFF >= SLOT_SIZE).
 * - bounce: messages land in 64 KB bounce buffers and each datagram is copied to its slot.
 *   Used until a size is known, when too few slots are left for a whole message, and for a
 *   message whose segment size differs from the prediction (rare: the path MTU changed).
 * A message is consumed from the socket as a whole, so what does not fit the batch stays in
 * the bounce buffers and goes out first next call. */
#define TV_GRO_PRED_MIN 1024 /* below this a message needs more than 64 slots: bounce */

static int gro_seg_size(struct msghdr *h) {
  for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c; c = CMSG_NXTHDR(h, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int g;
      memcpy(&g, CMSG_DATA(c), sizeof g);
      return g > 0 ? g : 0;
    }
  }
  return 0;
}

static void gro_msg_init(tv_engine *e, int i, struct iovec *iov, size_t iovlen) {
  struct msghdr *h = &e->gro_msgs[i].msg_hdr;
  h->msg_name = &e->gro_names[i];
  h->msg_namelen = sizeof e->gro_names[i];
  h->msg_iov = iov;
  h->msg_iovlen = iovlen;
  h->msg_control = e->gro_ctrl[i].buf;
  h->msg_controllen = sizeof e->gro_ctrl[i].buf;
  h->msg_flags = 0;
}

/* Where received datagrams go: n is the next datagram (meta/addr index), p the next free slot
 * region (p >= n: a direct receive may leave regions unused). */
typedef struct {
  uint8_t *buf, *addr;
  int32_t *meta;
  int n, p, cap;
  double now;
} tv_rx_cursor;

/* Verifies the datagram at d (in slot region c->p .. or earlier) as datagram c->n. */
static void rx_put(tv_engine *e, tv_rx_cursor *c, uint8_t *d, size_t len, int trunc, const struct sockaddr_storage *from,
                   int phys) {
  int32_t *mo = c->meta + (size_t)c->n * TV_META_FIELDS;
  rx_datagram(e, d, len, trunc, from, mo, c->addr + (size_t)c->n * TV_ADDR_STRIDE, c->now);
  mo[M_OFF] += (phys - c->n) * TV_SLOT_SIZE;
  c->n++;
}

static uint8_t *rx_slot(tv_rx_cursor *c, int phys) {
  return c->buf + (size_t)phys * TV_SLOT_SIZE + TV_HEADROOM - TV_HEADER_LEN;
}

/* Hands out bounce-buffered datagrams, one slot region each, while regions are left. */
static void gro_bounce_drain(tv_engine *e, tv_rx_cursor *c) {
  while (e->gro_i < e->gro_n && c->p < c->cap) {
    struct mmsghdr *mm = &e->gro_msgs[e->gro_i];
    size_t total = mm->msg_len, gs = (size_t)e->gro_seg[e->gro_i];
    size_t dl = total - e->gro_off;
    if (gs > 0 && dl > gs) dl = gs;
    int phys = c->p++;
    uint8_t *d = rx_slot(c, phys);
    size_t cl = dl < RX_ROOM ? dl : RX_ROOM;
    memcpy(d, e->gro_buf + (size_t)e->gro_i * TV_GRO_BUF + e->gro_off, cl);
    int trunc = dl > RX_ROOM || (mm->msg_hdr.msg_flags & MSG_TRUNC);
    rx_put(e, c, d, cl, trunc, &e->gro_names[e->gro_i], phys);
    if (gs > 0 && total > gs) e->st[ST_UDP_GRO_DATAGRAMS]++;
    e->gro_off += dl;
    if (e->gro_off >= total) {
      e->gro_i++;
      e->gro_off = 0;
    }
  }
}

/* Direct receive of up to vlen messages, message m into slot regions base + m*k .. (k iovs of
 * pred bytes each). A message of another segment size is re-split within its own regions;
 * one that cannot be (truncated, or more datagrams than regions) is moved to the bounce
 * buffers with every later one, in order. Returns recvmmsg's result. */
static int gro_recv_direct(tv_engine *e, tv_rx_cursor *c, int vlen, int k) {
  size_t pred = e->gro_pred;
  int base = c->p;
  for (int m = 0; m < vlen; m++) {
    for (int j = 0; j < k; j++) {
      e->iov[m * k + j].iov_base = rx_slot(c, base + m * k + j);
      e->iov[m * k + j].iov_len = pred;
    }
    gro_msg_init(e, m, &e->iov[m * k], (size_t)k);
  }
  int r;
  do r = recvmmsg(e->udp_fd, e->gro_msgs, (unsigned)vlen, MSG_DONTWAIT, NULL);
  while (r < 0 && errno == EINTR);
  if (r <= 0) return r;
  for (int m = 0; m < r; m++) e->gro_seg[m] = gro_seg_size(&e->gro_msgs[m].msg_hdr);
  for (int m = 0; m < r; m++) {
    struct mmsghdr *mm = &e->gro_msgs[m];
    size_t len = mm->msg_len, g = (size_t)e->gro_seg[m];
    int trunc = (mm->msg_hdr.msg_flags & MSG_TRUNC) != 0;
    size_t dsize = g > 0 ? g : len; /* datagram size in this message */
    int cnt = g > 0 ? (int)((len + g - 1) / g) : 1;
    if (!trunc && (cnt > 1 ? g != pred : len > pred)) {
      /* Not laid out one datagram per slot (the sender's segment size changed, or small
       * datagrams such as TCP ACKs of the other direction were coalesced). If they fit the
       * message's own slots, re-split them there through a bounce buffer (the bounce
       * buffers are idle during a direct receive). */
      e->st[ST_UDP_GRO_MISPREDICT]++;
      if (g >= TV_GRO_PRED_MIN && g <= RX_ROOM) e->gro_pred = g;
      if (cnt <= k && dsize <= RX_ROOM) {
        uint8_t *tmp = e->gro_buf;
        size_t left = len;
        for (int j = 0; left > 0; j++) {
          size_t cl = left < pred ? left : pred;
          memcpy(tmp + (size_t)j * pred, rx_slot(c, base + m * k + j), cl);
          left -= cl;
        }
        for (int j = 0; j < cnt; j++) {
          size_t dl = len - (size_t)j * dsize;
          if (dl > dsize) dl = dsize;
          int phys = base + m * k + j;
          memcpy(rx_slot(c, phys), tmp + (size_t)j * dsize, dl);
          rx_put(e, c, rx_slot(c, phys), dl, 0, &e->gro_names[m], phys);
          if (g > 0 && len > g) e->st[ST_UDP_GRO_DATAGRAMS]++;
          c->p = phys + 1;
        }
        continue;
      }
      trunc = 1; /* too many to re-split here: bounce this one and the rest */
    }
    if (trunc) {
      /* Bounce index b = mm2 - m <= mm2: nothing not yet moved is overwritten. */
      for (int mm2 = m; mm2 < r; mm2++) {
        int b = mm2 - m;
        size_t l = e->gro_msgs[mm2].msg_len, left = l < TV_GRO_BUF ? l : TV_GRO_BUF;
        uint8_t *dst = e->gro_buf + (size_t)b * TV_GRO_BUF;
        for (int j = 0; left > 0; j++) {
          size_t cl = left < pred ? left : pred;
          memcpy(dst, e->iov[mm2 * k + j].iov_base, cl);
          dst += cl;
          left -= cl;
        }
        if (b != mm2) {
          e->gro_names[b] = e->gro_names[mm2];
          e->gro_seg[b] = e->gro_seg[mm2];
        }
        e->gro_msgs[b].msg_hdr.msg_flags = e->gro_msgs[mm2].msg_hdr.msg_flags | (l > TV_GRO_BUF ? MSG_TRUNC : 0);
        e->gro_msgs[b].msg_len = (unsigned)(l < TV_GRO_BUF ? l : TV_GRO_BUF);
      }
      e->gro_n = r - m;
      e->gro_i = 0;
      e->gro_off = 0;
      return r;
    }
    for (int j = 0; j < cnt; j++) {
      size_t dl = len - (size_t)j * pred;
      if (dl > pred) dl = pred;
      int phys = base + m * k + j;
      rx_put(e, c, rx_slot(c, phys), dl, 0, &e->gro_names[m], phys);
      if (g > 0 && len > g) e->st[ST_UDP_GRO_DATAGRAMS]++;
      e->st[ST_UDP_GRO_DIRECT]++;
      c->p = phys + 1;
    }
  }
  return r;
}

static int udp_recv_gro(tv_engine *e, uint8_t *buf, int32_t *meta, uint8_t *addr, int cap) {
  if (e->closed || cap <= 0 || ensure_scratch(e, cap) < 0) return 0;
  tv_rx_cursor c = { .buf = buf, .addr = addr, .meta = meta, .n = 0, .p = 0, .cap = cap, .now = monotonic_ms() };
  int drained = 0;
  for (;;) {
    gro_bounce_drain(e, &c);
    if (c.p >= cap || drained) break;
    size_t pred = e->gro_pred;
    int k = pred >= TV_GRO_PRED_MIN ? (int)((TV_GRO_BUF + pred - 1) / pred) : 0;
    if (k > 0 && cap - c.p >= k) {
      int vlen = (cap - c.p) / k < TV_GRO_MSGS ? (cap - c.p) / k : TV_GRO_MSGS;
      int r = gro_recv_direct(e, &c, vlen, k);
      if (r <= 0) break;
      drained = r < vlen;
      continue;
    }
    /* Too few regions left for a direct message: take one message through a bounce buffer
     * (its rest comes first next call); more would only be copied later. */
    int vlen = k > 0 ? 1 : cap - c.p < TV_GRO_MSGS ? cap - c.p : TV_GRO_MSGS;
    for (int i = 0; i < vlen; i++) {
      e->gro_iov[i].iov_base = e->gro_buf + (size_t)i * TV_GRO_BUF;
      e->gro_iov[i].iov_len = TV_GRO_BUF;
      gro_msg_init(e, i, &e->gro_iov[i], 1);
    }
    int r;
    do r = recvmmsg(e->udp_fd, e->gro_msgs, (unsigned)vlen, MSG_DONTWAIT, NULL);
    while (r < 0 && errno == EINTR);
    e->gro_n = e->gro_i = 0;
    e->gro_off = 0;
    if (r <= 0) break;
    for (int i = 0; i < r; i++) {
      int g = gro_seg_size(&e->gro_msgs[i].msg_hdr);
      e->gro_seg[i] = g;
      if (g >= TV_GRO_PRED_MIN && (size_t)g <= RX_ROOM) e->gro_pred = (size_t)g;
    }
    e->gro_n = r;
    drained = r < vlen;
  }
  e->st[ST_RX_DATAGRAMS] += (uint64_t)c.n;
  return c.n;
}

/* udpRecv(buf, meta, addr) -> n */
/* One batch from the UDP socket, through GRO where the socket has it -> n. */
static int udp_read(tv_engine *e, uint8_t *buf, int32_t *meta, uint8_t *addr, int cap) {
  return e->udp_gro ? udp_recv_gro(e, buf, meta, addr, cap) : udp_recv(e, buf, meta, addr, cap);
}

static napi_value Engine_udpRecv(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  tv_batch_arg b;
  if (argc < 3 || !arg_batch(env, argv, 1, &b)) return NULL;
  return make_i32(env, udp_read(e, b.buf, b.meta, b.addr, b.cap));
}

static int32_t *tun_slot_meta(tv_engine *e, int32_t *meta, int n, size_t len) {
  int32_t *m = meta + (size_t)n * TV_META_FIELDS;
  fill_meta(m, (int32_t)len, KIND_DATA, TV_HEADROOM);
  m[M_SESSION] = -1;
  m[M_TYPE] = T_DATA;
  if (len > (size_t)e->mtu) { /* larger than any tunnel can carry (TUN MTU set above the engine's) */
    m[M_KIND] = -DR_OVERSIZE;
    e->st[ST_DROP_BASE + DR_OVERSIZE]++;
  }
  return m;
}

#define TUN_ROOM ((size_t)(TV_SLOT_SIZE - TV_HEADROOM - TV_TAG_LEN))

static int tun_read_plain(tv_engine *e, uint8_t *buf, int32_t *meta, int cap) {
  if (e->tun_fd < 0) return 0;
  int n = 0;
  while (n < cap) {
    uint8_t *p = buf + (size_t)n * TV_SLOT_SIZE + TV_HEADROOM;
    ssize_t r = read(e->tun_fd, p, TUN_ROOM);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break; /* EAGAIN: drained */
    tun_slot_meta(e, meta, n, (size_t)r);
    n++;
  }
  e->st[ST_TUN_RX] += (uint64_t)n;
  return n;
}

/* Emits segments of the current super-packet into slots n.. while they last. */
static int tso_emit(tv_engine *e, uint8_t *buf, int32_t *meta, int n, int cap) {
  while (e->tso_active && n < cap) {
    size_t len = tv_tso_next(&e->tso, buf + (size_t)n * TV_SLOT_SIZE + TV_HEADROOM);
    tun_slot_meta(e, meta, n, len);
    e->st[ST_TUN_SEGMENTS]++;
    n++;
    if (tv_tso_done(&e->tso)) e->tso_active = 0;
  }
  return n;
}

/* Turns the read in tun_rbuf into slots from n on: a GSO super-packet into segments
 * (possibly not all now), anything else into one slot with its checksum completed. */
static int tun_consume(tv_engine *e, uint8_t *buf, int32_t *meta, int n, int cap) {
  struct virtio_net_hdr vh;
  memcpy(&vh, e->tun_rbuf, sizeof vh);
  uint8_t *pkt = e->tun_rbuf + e->tun_vnet;
  size_t len = e->tun_rlen - (size_t)e->tun_vnet;
  if (vh.gso_type == VIRTIO_NET_HDR_GSO_NONE) {
    if ((vh.flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) && tv_csum_complete(pkt, len, vh.csum_start, vh.csum_offset) < 0) {
      e->st[ST_TUN_OFFLOAD_ERRORS]++;
      return n;
    }
    size_t cl = len < TUN_ROOM ? len : TUN_ROOM;
    memcpy(buf + (size_t)n * TV_SLOT_SIZE + TV_HEADROOM, pkt, cl);
    int32_t *m = tun_slot_meta(e, meta, n, cl);
    if (len > cl && m[M_KIND] > 0) {
      m[M_KIND] = -DR_OVERSIZE;
      e->st[ST_DROP_BASE + DR_OVERSIZE]++;
    }
    return n + 1;
  }
  if (tv_tso_init(&e->tso, pkt, len, &vh) < 0) {
    e->st[ST_TUN_OFFLOAD_ERRORS]++;
    return n;
  }
  if (e->tso.hl + e->tso.mss > TUN_ROOM) { /* segments would not fit a slot (TUN MTU > slot) */
    e->st[ST_DROP_BASE + DR_OVERSIZE]++;
    return n;
  }
  e->st[ST_TUN_GSO_READS]++;
  e->tso_active = 1;
  return tso_emit(e, buf, meta, n, cap);
}

/* With IFF_VNET_HDR one read() returns up to 64 KB: a TSO super-packet becomes up to
 * ~45 slots (more with a small MSS). Another read is attempted only while
 * TV_TUN_RESERVE slots are free; a super-packet that still does not fit is finished
 * on the next call (before anything new is read), so nothing is lost or reordered. */
static int tun_read_offload(tv_engine *e, uint8_t *buf, int32_t *meta, int cap) {
  int n = tso_emit(e, buf, meta, 0, cap);
  if (e->tun_injected && !e->tso_active && n < cap) {
    e->tun_injected = 0;
    n = tun_consume(e, buf, meta, n, cap);
  }
  int reserve = cap < TV_TUN_RESERVE ? cap : TV_TUN_RESERVE;
  while (e->tun_fd >= 0 && !e->tso_active && n < cap && (n == 0 || cap - n >= reserve)) {
    ssize_t r = read(e->tun_fd, e->tun_rbuf, TV_TUN_READ_MAX);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break; /* EAGAIN: drained */
    if (r <= e->tun_vnet || r == TV_TUN_READ_MAX) { /* no packet, or larger than any GSO packet */
      e->st[ST_TUN_OFFLOAD_ERRORS]++;
      continue;
    }
    e->tun_rlen = (size_t)r;
    n = tun_consume(e, buf, meta, n, cap);
  }
  e->st[ST_TUN_RX] += (uint64_t)n;
  return n;
}

/* tunRead(buf, meta) -> n */
/* One batch from the TUN, segmenting super-packets where it has offloads -> n. */
static int tun_read(tv_engine *e, uint8_t *buf, int32_t *meta, int cap) {
  return e->tun_vnet ? tun_read_offload(e, buf, meta, cap) : tun_read_plain(e, buf, meta, cap);
}

static napi_value Engine_tunRead(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  tv_batch_arg b;
  if (argc < 2 || !arg_batch(env, argv, 0, &b)) return NULL;
  if (e->closed) return make_i32(env, 0);
  return make_i32(env, tun_read(e, b.buf, b.meta, b.cap));
}

/* ---------- send ---------- */

static void write_header(uint8_t *h, uint8_t type, const tv_session *s, uint8_t hops, uint32_t net, uint64_t ctr) {
  h[0] = TV_VERSION;
  h[1] = type;
  h[2] = (uint8_t)s->mode;
  h[3] = hops;
  tv_wr32(h + 4, s->remote_index);
  tv_wr32(h + 8, s->sender_id);
  tv_wr32(h + 12, net);
  tv_wr64(h + 16, ctr);
}

/* Test hook: appends [u32 length][bytes of all iov] to cap_buf. */
static int capture_write(tv_engine *e, const struct iovec *iov, int cnt, size_t total) {
  size_t need = e->cap_len + 4 + total;
  if (need > e->cap_size) {
    size_t sz = e->cap_size ? e->cap_size : 65536;
    while (sz < need) sz *= 2;
    uint8_t *nb = realloc(e->cap_buf, sz);
    if (!nb) return -1;
    e->cap_buf = nb;
    e->cap_size = sz;
  }
  uint32_t l = (uint32_t)total;
  memcpy(e->cap_buf + e->cap_len, &l, 4);
  e->cap_len += 4;
  for (int i = 0; i < cnt; i++) {
    memcpy(e->cap_buf + e->cap_len, iov[i].iov_base, iov[i].iov_len);
    e->cap_len += iov[i].iov_len;
  }
  return 0;
}

/* One TUN write of `pkts` packets (more than one: a GSO super-packet). */
static void tun_emit(tv_engine *e, const struct iovec *iov, int cnt, int pkts) {
  size_t total = 0;
  for (int i = 0; i < cnt; i++) total += iov[i].iov_len;
  ssize_t r;
  if (e->tun_capture) r = capture_write(e, iov, cnt, total) == 0 ? (ssize_t)total : -1;
  else if (e->tun_fd < 0) r = -1;
  else {
    do r = writev(e->tun_fd, iov, cnt);
    while (r < 0 && errno == EINTR);
  }
  if (r == (ssize_t)total) e->st[ST_TUN_TX] += (uint64_t)pkts;
  else e->st[ST_TUN_WRITE_ERRORS] += (uint64_t)pkts;
}

static void tun_flush_coalesced(tv_engine *e) {
  if (!e->co_active) return;
  e->co_active = 0;
  struct virtio_net_hdr vh;
  tv_coalesce_finish(&e->co, &vh);
  memset(e->vnet_out, 0, sizeof e->vnet_out);
  memcpy(e->vnet_out, &vh, sizeof vh);
  e->co.iov[0].iov_base = e->vnet_out;
  e->co.iov[0].iov_len = (size_t)e->tun_vnet;
  tun_emit(e, e->co.iov, e->co.niov, e->co.count);
  if (e->co.count > 1) e->st[ST_TUN_COALESCED_WRITES]++;
}

/* Writes one inner packet to the TUN. With offload, consecutive TCP segments of one
 * flow are held and merged into one GSO write; anything else flushes them first
 * (keeping the order) and goes alone behind a zeroed header, so the kernel still
 * verifies its checksum. */
static void tun_put(tv_engine *e, uint8_t *p, size_t len) {
  if (!e->tun_vnet) {
    struct iovec v = {.iov_base = p, .iov_len = len};
    tun_emit(e, &v, 1, 1);
    return;
  }
  size_t l4, hl;
  if (tv_tcp_coalescable(p, len, &l4, &hl)) {
    if (e->co_active && tv_coalesce_append(&e->co, p, len, l4, hl)) return;
    tun_flush_coalesced(e);
    tv_coalesce_start(&e->co, p, len, l4, hl);
    e->co_active = 1;
    return;
  }
  tun_flush_coalesced(e);
  static const uint8_t zero[TV_VNET_HDR_MAX];
  struct iovec v[2] = {{.iov_base = (void *)zero, .iov_len = (size_t)e->tun_vnet}, {.iov_base = p, .iov_len = len}};
  tun_emit(e, v, 2, 1);
}

/* Closes UDP message j: more than one datagram makes it a UDP_SEGMENT send. */
static void udp_group_finish(tv_engine *e, int j, size_t gso_size) {
  struct msghdr *h = &e->msgs[j].msg_hdr;
  if (e->msg_segs[j] < 2) {
    h->msg_control = NULL;
    h->msg_controllen = 0;
    return;
  }
  h->msg_control = e->msg_ctrl[j].buf;
  h->msg_controllen = sizeof e->msg_ctrl[j].buf;
  struct cmsghdr *c = CMSG_FIRSTHDR(h);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof(uint16_t));
  uint16_t g = (uint16_t)gso_size;
  memcpy(CMSG_DATA(c), &g, sizeof g);
}

/* forward(buf, meta, n) */
static void forward_batch(tv_engine *e, uint8_t *buf, int32_t *meta, int n, int cap);

static napi_value Engine_forward(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  tv_batch_arg b;
  int32_t n;
  if (argc < 3 || !arg_batch(env, argv, 0, &b) || !arg_i32(env, argv[2], "n", &n)) return NULL;
  forward_batch(e, b.buf, b.meta, n, b.cap);
  return undefined(env);
}

/* Seals/sends or writes to the TUN slots 0..n of a batch of cap slots, per their ACTION. */
static void forward_batch(tv_engine *e, uint8_t *buf, int32_t *meta, int n, int cap) {
  if (n > cap) n = cap;
  if (e->closed || n <= 0 || ensure_scratch(e, n) < 0) return;
  /* UDP: nm messages over ni iov entries (one per datagram). The open group (the last
   * message) grows while the next UDP-bound slot goes to the same session with a
   * datagram of the group's size; a shorter one ends it. Only consecutive UDP-bound
   * slots of one session share a message: each slot carries its own destination. */
  int nm = 0, ni = 0, group_closed = 1;
  size_t gso_size = 0, group_bytes = 0;
  for (int i = 0; i < n; i++) {
    int32_t *m = meta + (size_t)i * TV_META_FIELDS;
    int32_t action = m[M_ACTION], off = m[M_OFF], len = m[M_LEN];
    if (action < 0) continue;
    /* OFF counts from slot i but may point into a later slot's region (direct GRO
     * receive): the checks below apply within the slot the packet is in. */
    if (off < 0 || (size_t)i * TV_SLOT_SIZE + (size_t)off >= (size_t)cap * TV_SLOT_SIZE) {
      e->st[ST_DROP_BASE + DR_OVERSIZE]++;
      continue;
    }
    uint8_t *slot = buf + (size_t)(i + off / TV_SLOT_SIZE) * TV_SLOT_SIZE;
    off %= TV_SLOT_SIZE;
    if (action == ACTION_TUN) {
      if (len <= 0 || off < 0 || off > TV_SLOT_SIZE - len) {
        e->st[ST_DROP_BASE + DR_OVERSIZE]++;
        continue;
      }
      if (tv_mss_clamp(slot + off, (size_t)len, e->mtu)) e->st[ST_MSS_CLAMPED]++;
      tun_put(e, slot + off, (size_t)len);
      continue;
    }
    tv_session *s = tv_session_get(&e->sessions, action);
    if (!s) {
      e->st[ST_DROP_BASE + DR_UNKNOWN_SESSION]++;
      continue;
    }
    if (len <= 0) {
      e->st[ST_DROP_BASE + DR_TRUNCATED]++;
      continue;
    }
    if (len > e->mtu || off < TV_HEADER_LEN || off > TV_SLOT_SIZE - TV_TAG_LEN - len) {
      e->st[ST_DROP_BASE + DR_OVERSIZE]++;
      continue;
    }
    /* HOPS -1 from a TinyVR: it is no VR, so its packets leave with hops 0. */
    int32_t hops = m[M_HOPS] + 1 > 0 ? m[M_HOPS] + 1 : 0;
    if (hops > TV_MAX_HOPS) { /* the receiver would drop it anyway */
      e->st[ST_DROP_BASE + DR_HOP_LIMIT]++;
      continue;
    }
    if (s->tx_counter == UINT64_MAX) { /* never wrap: a reused nonce would break AEAD */
      e->st[ST_SEND_ERRORS]++;
      continue;
    }
    uint8_t *pkt = slot + off;
    if (tv_mss_clamp(pkt, (size_t)len, e->mtu)) e->st[ST_MSS_CLAMPED]++;
    uint8_t *h = pkt - TV_HEADER_LEN;
    write_header(h, T_DATA, s, (uint8_t)hops, (uint32_t)m[M_OUTNET], ++s->tx_counter);
    if (tv_seal(&s->tx, h, (size_t)len) < 0) {
      e->st[ST_SEND_ERRORS]++;
      continue;
    }
    size_t dlen = TV_HEADER_LEN + (size_t)len + (s->mode == AUTH_NONE ? 0 : TV_TAG_LEN);
    e->iov[ni].iov_base = h;
    e->iov[ni].iov_len = dlen;
    if (!group_closed && e->udp_gso && !s->no_gso && e->msg_sess[nm - 1] == s && dlen <= gso_size &&
        e->msg_segs[nm - 1] < TV_GSO_MAX_SEGS && group_bytes + dlen <= TV_GSO_MAX_BYTES) {
      e->msgs[nm - 1].msg_hdr.msg_iovlen++;
      e->msg_segs[nm - 1]++;
      group_bytes += dlen;
      if (dlen < gso_size) group_closed = 1;
      ni++;
      continue;
    }
    if (nm > 0) udp_group_finish(e, nm - 1, gso_size);
    struct msghdr *mh = &e->msgs[nm].msg_hdr;
    mh->msg_name = &s->ep.sa;
    mh->msg_namelen = s->ep.salen;
    mh->msg_iov = &e->iov[ni];
    mh->msg_iovlen = 1;
    mh->msg_control = NULL;
    mh->msg_controllen = 0;
    mh->msg_flags = 0;
    e->msg_sess[nm] = s;
    e->msg_segs[nm] = 1;
    gso_size = group_bytes = dlen;
    group_closed = 0;
    ni++;
    nm++;
  }
  tun_flush_coalesced(e);
  if (nm) {
    udp_group_finish(e, nm - 1, gso_size);
    flush_udp(e, nm);
  }
}

/* ---------- fused pumps (the TinyVR's data path) ----------
 * A TinyVR's decision is fixed: whatever its TUN gives goes to its one session, and a
 * datagram from the FullVR goes to the TUN only if it is addressed to this host. Reading,
 * deciding and forwarding in one native call per wake-up spares the generic JS pump's
 * round trips (read, decide loop, forward: ~15 % of a TinyVR's CPU at low packet rates,
 * i.e. latency on every crossing). Routers with real decisions (the FullVR) keep the
 * generic read/decide/forward calls. */
#define TV_PUMP_BATCHES 16 /* batches per wake-up, as the JS pump: the other fd gets its turn */

/* Shortcut routes of a TinyVR (cfg[TV_SC_COUNT] entries from cfg[TV_SC_BASE], TV_SC_FIELDS
 * each: session, family 4|6, prefix bits, then the prefix's 16 address bytes as 4 int32s):
 * a packet whose destination lies in one goes to that session (a peer FullVR serving the
 * destination's site) instead of the default one. A handful of sites, so a linear scan. */
enum { TV_SC_COUNT = 4, TV_SC_BASE = 8, TV_SC_FIELDS = 7, TV_SC_MAX = 16 };

typedef struct {
  const int32_t *cfg; /* NULL: no shortcuts */
  int n;
  /* the last answer: consecutive packets to one destination (a super-packet's segments)
   * reuse it instead of scanning again; valid for one wake-up (JS may rewrite cfg between) */
  int last_v;
  uint8_t last_dst[16];
  int32_t last;
} tv_shortcuts;

static int prefix_match(const uint8_t *a, const uint8_t *prefix, int bits) {
  int full = bits / 8, rest = bits % 8;
  if (memcmp(a, prefix, (size_t)full) != 0) return 0;
  return rest == 0 || ((a[full] ^ prefix[full]) & (uint8_t)(0xff << (8 - rest))) == 0;
}

/* The session for a packet: the longest matching shortcut's, else `session`. */
static int32_t shortcut_session(tv_shortcuts *sc, const uint8_t *p, int32_t len, int32_t session) {
  int v = p[0] >> 4, best = -1;
  if (v == 4 ? len < 20 : v != 6 || len < 40) return session;
  const uint8_t *dst = v == 4 ? p + 16 : p + 24;
  size_t alen = v == 4 ? 4 : 16;
  if (sc->last_v == v && memcmp(sc->last_dst, dst, alen) == 0) return sc->last;
  for (int i = 0; i < sc->n; i++) {
    const int32_t *r = sc->cfg + TV_SC_BASE + i * TV_SC_FIELDS;
    int bits = r[2];
    if (r[1] != v || bits <= best || bits < 0 || bits > (v == 4 ? 32 : 128)) continue;
    if (prefix_match(dst, (const uint8_t *)(r + 3), bits)) best = bits, session = r[0];
  }
  sc->last_v = v;
  memcpy(sc->last_dst, dst, alen);
  sc->last = session;
  return session;
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

static int addr_in(const uint8_t *a, const uint8_t *list, uint32_t count, size_t width) {
  for (uint32_t i = 0; i < count; i++)
    if (memcmp(a, list + (size_t)i * width, width) == 0) return 1;
  return 0;
}

#define TV_PUMP_CONTROL 0x10000

/* One UDP batch: DATA addressed to an own address to the TUN, the rest dropped (not_for_me
 * counts DATA for others) -> n, | TV_PUMP_CONTROL when CONTROL slots are left for the caller. */
static int udp_pump_batch(tv_engine *e, uint8_t *buf, int32_t *meta, uint8_t *addr, int cap, const uint8_t *o4,
                          uint32_t n4, const uint8_t *o6, uint32_t n6) {
  int n = udp_read(e, buf, meta, addr, cap);
  if (n <= 0) return 0;
  int ctrl = 0;
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
    if (ok) m[M_ACTION] = ACTION_TUN;
    else e->st[ST_NOT_FOR_ME]++;
  }
  forward_batch(e, buf, meta, n, cap);
  return ctrl ? n | TV_PUMP_CONTROL : n;
}

/* tunPumpTo(buf, meta, session, outnet) -> packets read. session <= 0: drop them. */
static napi_value Engine_tunPumpTo(napi_env env, napi_callback_info info) {
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
static napi_value Engine_udpPumpLocal(napi_env env, napi_callback_info info) {
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
  for (int k = 0; k < TV_PUMP_BATCHES && !e->closed; k++) {
    r = udp_pump_batch(e, b.buf, b.meta, b.addr, b.cap, o4, n4, o6, n6);
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

static void pump_run(tv_poller *p) {
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
    /* no JS runs in between: cfg holds; the count is bounded by the array JS gave */
    tv_shortcuts sc = {.cfg = cfg};
    if (q->cfg_len > TV_SC_COUNT && cfg[TV_SC_COUNT] > 0) {
      size_t room = q->cfg_len > TV_SC_BASE ? (q->cfg_len - TV_SC_BASE) / TV_SC_FIELDS : 0;
      sc.n = cfg[TV_SC_COUNT] < (int32_t)room ? cfg[TV_SC_COUNT] : (int)room;
      if (sc.n > TV_SC_MAX) sc.n = TV_SC_MAX;
    }
    tun_pump(e, q->buf, q->meta, q->cap, cfg[0], cfg[1], &sc);
    return;
  }
  for (int k = 0; k < TV_PUMP_BATCHES && !e->closed; k++) {
    /* counts are re-checked on every batch: the JS callback may have written anything into cfg */
    uint32_t n4 = cfg[2] < 0 ? 0 : (uint32_t)cfg[2], n6 = cfg[3] < 0 ? 0 : (uint32_t)cfg[3];
    if ((size_t)n4 * 4 > q->l4) n4 = (uint32_t)(q->l4 / 4);
    if ((size_t)n6 * 16 > q->l6) n6 = (uint32_t)(q->l6 / 16);
    int r = udp_pump_batch(e, q->buf, q->meta, q->addr, q->cap, q->own4, n4, q->own6, n6);
    if (r & TV_PUMP_CONTROL) {
      r &= 0xffff;
      poller_invoke(p, r); /* JS handles the CONTROL slots before the batch is reused */
      if (p->dead || p->pump != q) return; /* JS stopped or replaced the pump: q may be gone */
    }
    if (r < q->cap) break;
  }
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

static napi_value Engine_pumpTunNative(napi_env env, napi_callback_info info) { return pump_start(env, info, 0, 0); }
static napi_value Engine_pumpUdpNative(napi_env env, napi_callback_info info) { return pump_start(env, info, 1, 0); }
static napi_value Engine_routeUdpNative(napi_env env, napi_callback_info info) { return pump_start(env, info, 1, 1); }
static napi_value Engine_routeTunNative(napi_env env, napi_callback_info info) { return pump_start(env, info, 0, 1); }

static napi_value Engine_sendKeepalive(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  uint32_t index;
  if (argc < 1 || !arg_index(env, argv[0], &index)) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_type_error(env, NULL, "sendKeepalive(index)");
    return NULL;
  }
  if (e->closed) return undefined(env);
  tv_session *s = tv_session_get(&e->sessions, index);
  if (!s) {
    e->st[ST_DROP_BASE + DR_UNKNOWN_SESSION]++;
    return undefined(env);
  }
  if (s->tx_counter == UINT64_MAX) {
    e->st[ST_SEND_ERRORS]++;
    return undefined(env);
  }
  uint8_t pkt[TV_HEADER_LEN + TV_TAG_LEN];
  write_header(pkt, T_KEEPALIVE, s, 0, 0, ++s->tx_counter);
  if (tv_seal(&s->tx, pkt, 0) < 0) {
    e->st[ST_SEND_ERRORS]++;
    return undefined(env);
  }
  size_t len = TV_HEADER_LEN + (s->mode == AUTH_NONE ? 0 : TV_TAG_LEN);
  if (send_one(e, pkt, len, &s->ep) == 0) {
    s->tx_packets++;
    s->tx_bytes += len;
  }
  return undefined(env);
}

/* sendRaw(host, port, data) */
static napi_value Engine_sendRaw(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  tv_endpoint ep;
  void *data;
  size_t len;
  if (argc < 3 || !parse_peer(env, e, argv[0], argv[1], &ep) ||
      !arg_typed(env, argv[2], napi_uint8_array, "data", &data, &len)) {
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_type_error(env, NULL, "sendRaw(host, port, data)");
    return NULL;
  }
  if (e->closed) return undefined(env);
  send_one(e, len ? data : (const uint8_t *)"", len, &ep);
  return undefined(env);
}

static napi_value Engine_onUdpReadable(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  if (argc < 1) NAPI_CALL(env, napi_get_undefined(env, &argv[0]));
  return set_poller(env, e, &e->udp_poll, e->udp_fd, argv[0], "UDP", NULL);
}

static napi_value Engine_onTunReadable(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  if (argc < 1) NAPI_CALL(env, napi_get_undefined(env, &argv[0]));
  return set_poller(env, e, &e->tun_poll, e->tun_fd, argv[0], "TUN", NULL);
}

/* setModeration(us): 0 turns wake-up moderation off; 10..100000 µs turns it on (see
 * tv_moderator). Takes effect from the next wake-up. */
static napi_value Engine_setModeration(napi_env env, napi_callback_info info) {
  int32_t us;
  tv_engine *e = engine_and_i32(env, info, "setModeration(us): 1 argument expected", "us", &us);
  if (!e) return NULL;
  if (us != 0 && (us < 10 || us > 100000)) {
    napi_throw_range_error(env, NULL, "moderation must be 0 (off) or 10..100000 µs");
    return NULL;
  }
  if (e->closed) {
    napi_throw_error(env, NULL, "PacketEngine is closed");
    return NULL;
  }
  if (us == 0) {
    mod_stop(e);
    return undefined(env);
  }
  if (e->mod) {
    e->mod->us = us;
    if (e->mod->active) mod_arm(e->mod);
    return undefined(env);
  }
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    throw_napi(env, "napi_get_uv_event_loop");
    return NULL;
  }
  tv_moderator *m = calloc(1, sizeof *m);
  if (!m) return throw_sys(env, "moderation", ENOMEM);
  m->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (m->tfd < 0) {
    int err = errno;
    free(m);
    return throw_sys(env, "timerfd_create", err);
  }
  int r = uv_poll_init(loop, &m->handle, m->tfd);
  if (r == 0) {
    m->handle.data = m;
    r = uv_poll_start(&m->handle, UV_READABLE, on_mod_timer);
    if (r != 0) {
      uv_close((uv_handle_t *)&m->handle, mod_closed);
    }
  } else {
    close(m->tfd);
    free(m);
  }
  if (r != 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "uv_poll(timerfd): %s", uv_strerror(r));
    napi_throw_error(env, uv_err_name(r), msg);
    return NULL;
  }
  uv_unref((uv_handle_t *)&m->handle); /* the data fds keep the loop alive, not the timer */
  m->us = us;
  m->e = e;
  e->mod = m;
  return undefined(env);
}

static napi_value Engine_stats(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  tv_engine *e = unwrap_this(env, info, &argc, NULL);
  if (!e) return NULL;
  napi_value obj;
  NAPI_CALL(env, napi_create_object(env, &obj));
  for (int i = 0; i < ST_COUNT; i++) {
    if (!stat_names[i]) continue;
    if (!set_num(env, obj, stat_names[i], (double)e->st[i])) {
      throw_napi(env, "stats");
      return NULL;
    }
  }
  return obj;
}

static napi_value Engine_features(napi_env env, napi_callback_info info) {
  size_t argc = 0;
  tv_engine *e = unwrap_this(env, info, &argc, NULL);
  if (!e) return NULL;
  napi_value obj, t, g, s;
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_get_boolean(env, e->tun_vnet > 0, &t));
  NAPI_CALL(env, napi_get_boolean(env, e->udp_gro != 0, &g));
  NAPI_CALL(env, napi_get_boolean(env, e->udp_gso != 0, &s));
  NAPI_CALL(env, napi_set_named_property(env, obj, "tunOffload", t));
  NAPI_CALL(env, napi_set_named_property(env, obj, "udpGro", g));
  NAPI_CALL(env, napi_set_named_property(env, obj, "udpGso", s));
  return obj;
}

/* Test hook: __tunInject(data) makes the next tunRead process data (virtio_net_hdr +
 * packet) as if read() from the TUN had returned it. */
static napi_value Engine_tunInject(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  void *data;
  size_t len;
  if (argc < 1 || !arg_typed(env, argv[0], napi_uint8_array, "data", &data, &len)) return NULL;
  if (e->closed || !e->tun_vnet || e->tso_active || e->tun_injected || len <= (size_t)e->tun_vnet ||
      len >= TV_TUN_READ_MAX) {
    napi_throw_error(env, NULL, "__tunInject: needs an open offload engine, no pending read, 10..64K bytes");
    return NULL;
  }
  memcpy(e->tun_rbuf, data, len);
  e->tun_rlen = len;
  e->tun_injected = 1;
  return undefined(env);
}

/* Test hook: __tunCapture(on) -> Buffer[]: returns the TUN writes captured so far
 * (virtio_net_hdr + packet each) and sets whether later writes are captured. */
static napi_value Engine_tunCapture(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  bool on = false;
  if (argc < 1 || napi_get_value_bool(env, argv[0], &on) != napi_ok) {
    napi_throw_type_error(env, NULL, "__tunCapture(on: boolean)");
    return NULL;
  }
  napi_value arr;
  NAPI_CALL(env, napi_create_array(env, &arr));
  uint32_t k = 0;
  for (size_t o = 0; o + 4 <= e->cap_len;) {
    uint32_t l;
    memcpy(&l, e->cap_buf + o, 4);
    napi_value b;
    void *unused;
    NAPI_CALL(env, napi_create_buffer_copy(env, l, e->cap_buf + o + 4, &unused, &b));
    NAPI_CALL(env, napi_set_element(env, arr, k++, b));
    o += 4 + l;
  }
  e->cap_len = 0;
  e->tun_capture = on;
  return arr;
}

/* ---------- module functions ---------- */

/* openTun(name[, offload]) -> { fd, name, offload, offloadError? } */
static napi_value OpenTun(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[64] = "";
  if (argc >= 1 && !arg_str(env, argv[0], "name", name, sizeof name)) return NULL;
  int32_t want = 0;
  if (argc >= 2 && !arg_i32(env, argv[1], "offload", &want)) return NULL;
  char out[64], oerr[160] = "";
  const char *what = "openTun";
  int offload = 0;
  int fd = tv_open_tun(name, want != 0, out, sizeof out, &what, &offload, oerr, sizeof oerr);
  if (fd < 0) {
    int err = errno;
    char w[128];
    if (strcmp(what, "TUNSETIFF") == 0) snprintf(w, sizeof w, "TUNSETIFF %s", name);
    else snprintf(w, sizeof w, "%s", what);
    return throw_sys(env, w, err);
  }
  napi_value obj, vname, voff;
  if (napi_create_object(env, &obj) != napi_ok || napi_create_string_utf8(env, out, NAPI_AUTO_LENGTH, &vname) != napi_ok ||
      napi_get_boolean(env, offload != 0, &voff) != napi_ok ||
      napi_set_named_property(env, obj, "fd", make_i32(env, fd)) != napi_ok ||
      napi_set_named_property(env, obj, "name", vname) != napi_ok ||
      napi_set_named_property(env, obj, "offload", voff) != napi_ok) {
    close(fd);
    throw_napi(env, "openTun");
    return NULL;
  }
  if (oerr[0]) {
    napi_value verr;
    if (napi_create_string_utf8(env, oerr, NAPI_AUTO_LENGTH, &verr) != napi_ok ||
        napi_set_named_property(env, obj, "offloadError", verr) != napi_ok) {
      close(fd);
      throw_napi(env, "openTun");
      return NULL;
    }
  }
  return obj;
}

/* openUdp(host, port, bufferBytes[, gro]) -> { fd, port, gro } */
static napi_value OpenUdp(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "openUdp(host, port, bufferBytes[, gro])");
    return NULL;
  }
  char host[128];
  int32_t port, bytes, want_gro = 0;
  if (!arg_str(env, argv[0], "host", host, sizeof host) || !arg_i32(env, argv[1], "port", &port) ||
      !arg_i32(env, argv[2], "bufferBytes", &bytes) || (argc > 3 && !arg_i32(env, argv[3], "gro", &want_gro)))
    return NULL;
  if (port < 0 || port > 65535) {
    napi_throw_range_error(env, NULL, "port must be 0..65535");
    return NULL;
  }
  const char *what = "openUdp";
  int bound = 0;
  int fd = tv_open_udp(host, port, bytes, &bound, &what);
  if (fd < 0) {
    int err = errno;
    char w[192];
    snprintf(w, sizeof w, "%s %s:%d", what, host, port);
    return throw_sys(env, w, err);
  }
  int one = 1;
  int gro = want_gro && setsockopt(fd, SOL_UDP, UDP_GRO, &one, sizeof one) == 0; /* needs Linux >= 5.0 */
  napi_value obj, vgro;
  if (napi_create_object(env, &obj) != napi_ok || napi_get_boolean(env, gro != 0, &vgro) != napi_ok ||
      napi_set_named_property(env, obj, "fd", make_i32(env, fd)) != napi_ok ||
      napi_set_named_property(env, obj, "port", make_i32(env, bound)) != napi_ok ||
      napi_set_named_property(env, obj, "gro", vgro) != napi_ok) {
    close(fd);
    throw_napi(env, "openUdp");
    return NULL;
  }
  return obj;
}

static napi_value CloseFd(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t fd;
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "closeFd(fd)");
    return NULL;
  }
  if (!arg_i32(env, argv[0], "fd", &fd)) return NULL;
  /* No EINTR retry: Linux releases the fd even when close() is interrupted. */
  if (close(fd) < 0 && errno != EINTR) return throw_sys(env, "close", errno);
  return undefined(env);
}

static napi_value MonotonicMs(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  NAPI_CALL(env, napi_create_double(env, monotonic_ms(), &r));
  return r;
}

static napi_value GmacImpl(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  NAPI_CALL(env, napi_create_string_utf8(env, tv_gmac_impl(), NAPI_AUTO_LENGTH, &r));
  return r;
}

/* Test hook: __gmacTag(wide, key32, nonce12, data) -> 16-byte tag through the wide GHASH
 * (wide=1) or OpenSSL's GCM core (wide=0); throws if the wide one is unsupported here. */
static napi_value GmacTag(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t wide;
  void *key, *nonce, *data;
  size_t kl, nl, dl;
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "__gmacTag(wide, key, nonce, data)");
    return NULL;
  }
  if (!arg_i32(env, argv[0], "wide", &wide) || !arg_typed(env, argv[1], napi_uint8_array, "key", &key, &kl) ||
      !arg_typed(env, argv[2], napi_uint8_array, "nonce", &nonce, &nl) ||
      !arg_typed(env, argv[3], napi_uint8_array, "data", &data, &dl))
    return NULL;
  if (kl != TV_KEY_LEN || nl != 12) {
    napi_throw_range_error(env, NULL, "__gmacTag: key must be 32 bytes and nonce 12");
    return NULL;
  }
  uint8_t tag[16];
  if (tv_gmac_tag(wide != 0, key, nonce, data, dl, tag) < 0) {
    napi_throw_error(env, NULL, wide ? "__gmacTag: the wide GHASH is not supported on this CPU" : "__gmacTag: OpenSSL error");
    return NULL;
  }
  napi_value b;
  void *unused;
  NAPI_CALL(env, napi_create_buffer_copy(env, sizeof tag, tag, &unused, &b));
  return b;
}

static bool export_fn(napi_env env, napi_value exports, const char *name, napi_callback cb) {
  napi_value f;
  return napi_create_function(env, name, NAPI_AUTO_LENGTH, cb, NULL, &f) == napi_ok &&
         napi_set_named_property(env, exports, name, f) == napi_ok;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor methods[] = {
    {"setSession", NULL, Engine_setSession, NULL, NULL, NULL, napi_default, NULL},
    {"setSessionEndpoint", NULL, Engine_setSessionEndpoint, NULL, NULL, NULL, napi_default, NULL},
    {"setMtu", NULL, Engine_setMtu, NULL, NULL, NULL, napi_default, NULL},
    {"deleteSession", NULL, Engine_deleteSession, NULL, NULL, NULL, napi_default, NULL},
    {"sessionInfo", NULL, Engine_sessionInfo, NULL, NULL, NULL, napi_default, NULL},
    {"udpRecv", NULL, Engine_udpRecv, NULL, NULL, NULL, napi_default, NULL},
    {"tunRead", NULL, Engine_tunRead, NULL, NULL, NULL, napi_default, NULL},
    {"forward", NULL, Engine_forward, NULL, NULL, NULL, napi_default, NULL},
    {"tunPumpTo", NULL, Engine_tunPumpTo, NULL, NULL, NULL, napi_default, NULL},
    {"udpPumpLocal", NULL, Engine_udpPumpLocal, NULL, NULL, NULL, napi_default, NULL},
    {"pumpTunNative", NULL, Engine_pumpTunNative, NULL, NULL, NULL, napi_default, NULL},
    {"pumpUdpNative", NULL, Engine_pumpUdpNative, NULL, NULL, NULL, napi_default, NULL},
    {"routeUdpNative", NULL, Engine_routeUdpNative, NULL, NULL, NULL, napi_default, NULL},
    {"routeTunNative", NULL, Engine_routeTunNative, NULL, NULL, NULL, napi_default, NULL},
    {"sendKeepalive", NULL, Engine_sendKeepalive, NULL, NULL, NULL, napi_default, NULL},
    {"sendRaw", NULL, Engine_sendRaw, NULL, NULL, NULL, napi_default, NULL},
    {"onUdpReadable", NULL, Engine_onUdpReadable, NULL, NULL, NULL, napi_default, NULL},
    {"onTunReadable", NULL, Engine_onTunReadable, NULL, NULL, NULL, napi_default, NULL},
    {"stats", NULL, Engine_stats, NULL, NULL, NULL, napi_default, NULL},
    {"setModeration", NULL, Engine_setModeration, NULL, NULL, NULL, napi_default, NULL},
    {"features", NULL, Engine_features, NULL, NULL, NULL, napi_default, NULL},
    {"__tunInject", NULL, Engine_tunInject, NULL, NULL, NULL, napi_default, NULL},
    {"__tunCapture", NULL, Engine_tunCapture, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, Engine_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  NAPI_CALL(env, napi_define_class(env, "Engine", NAPI_AUTO_LENGTH, Engine_new, NULL,
                                   sizeof methods / sizeof methods[0], methods, &cls));
  NAPI_CALL(env, napi_set_named_property(env, exports, "Engine", cls));
  if (!export_fn(env, exports, "openTun", OpenTun) || !export_fn(env, exports, "openUdp", OpenUdp) ||
      !export_fn(env, exports, "closeFd", CloseFd) || !export_fn(env, exports, "monotonicMs", MonotonicMs) ||
      !export_fn(env, exports, "gmacImpl", GmacImpl) || !export_fn(env, exports, "__gmacTag", GmacTag)) {
    throw_napi(env, "module init");
    return NULL;
  }
  /* Lets the TS wrapper detect a stale build whose layout differs from its constants. */
  napi_value c;
  NAPI_CALL(env, napi_create_object(env, &c));
  if (!set_num(env, c, "SLOT_SIZE", TV_SLOT_SIZE) || !set_num(env, c, "HEADROOM", TV_HEADROOM) ||
      !set_num(env, c, "HEADER_LEN", TV_HEADER_LEN) || !set_num(env, c, "TAG_LEN", TV_TAG_LEN) ||
      !set_num(env, c, "META_FIELDS", TV_META_FIELDS) || !set_num(env, c, "ADDR_STRIDE", TV_ADDR_STRIDE) ||
      !set_num(env, c, "MAX_BATCH", TV_MAX_BATCH) || !set_num(env, c, "MIN_MTU", TV_MIN_MTU) ||
      !set_num(env, c, "MAX_MTU", TV_MAX_MTU) || !set_num(env, c, "VNET_HDR_LEN", TV_VNET_HDR_LEN)) {
    throw_napi(env, "module init");
    return NULL;
  }
  NAPI_CALL(env, napi_set_named_property(env, exports, "constants", c));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
