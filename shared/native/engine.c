/* N-API surface of the packet engine: module functions (openTun, openUdp, closeFd,
 * monotonicMs) and the Engine class. The hot paths (udpRecv, tunRead, forward)
 * handle a whole batch per call and never allocate per packet. */
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

enum {
  ST_RX_DATAGRAMS, ST_TX_DATAGRAMS, ST_TUN_RX, ST_TUN_TX, ST_MSS_CLAMPED,
  ST_SEND_ERRORS, ST_TUN_WRITE_ERRORS, ST_TUN_GSO_READS, ST_TUN_SEGMENTS, ST_TUN_COALESCED_WRITES,
  ST_TUN_OFFLOAD_ERRORS, ST_UDP_GRO_DATAGRAMS, ST_UDP_GSO_SENDS, ST_UDP_GSO_FALLBACKS,
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
} tv_poller;

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
  /* UDP GSO: usable, and proven (a send succeeded, so a later refusal is the path's). */
  int udp_gso, udp_gso_ok;
  /* Test hook: TUN writes are captured here ([u32 length][bytes]...) instead of written. */
  int tun_capture;
  uint8_t *cap_buf;
  size_t cap_len, cap_size;
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
  if (!m || !v || !n || !s) {
    free(m); free(v); free(n); free(s);
    return -1;
  }
  free(e->msgs); free(e->iov); free(e->names); free(e->msg_sess);
  e->msgs = m; e->iov = v; e->names = n; e->msg_sess = s;
  e->scratch_cap = cap;
  return 0;
}

static void free_scratch(tv_engine *e) {
  free(e->msgs); free(e->iov); free(e->names); free(e->msg_sess);
  e->msgs = NULL; e->iov = NULL; e->names = NULL; e->msg_sess = NULL;
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

/* Sends msgs[0..m) with as few sendmmsg calls as the kernel allows. A message the
 * kernel rejects is counted and skipped; a full buffer gets a few 1 ms waits. */
static void flush_udp(tv_engine *e, int m) {
  int sent = 0, tries = 0;
  while (sent < m) {
    int r = sendmmsg(e->udp_fd, e->msgs + sent, (unsigned)(m - sent), 0);
    if (r > 0) {
      for (int j = sent; j < sent + r; j++) {
        tv_session *s = e->msg_sess[j];
        s->tx_packets++;
        s->tx_bytes += e->msgs[j].msg_len;
      }
      e->st[ST_TX_DATAGRAMS] += (uint64_t)r;
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
      e->st[ST_SEND_ERRORS] += (uint64_t)(m - sent);
      return;
    }
    e->st[ST_SEND_ERRORS]++; /* this one message failed (EMSGSIZE, unreachable, ...) */
    sent++;
  }
}

/* ---------- pollers ---------- */

static void poller_closed(uv_handle_t *h) { free(h->data); }

static void poller_release(tv_poller *p) {
  if (p->cb) napi_delete_reference(p->env, p->cb);
  if (p->actx) napi_async_destroy(p->env, p->actx);
  p->cb = NULL;
  p->actx = NULL;
  uv_close((uv_handle_t *)&p->handle, poller_closed);
}

static void poller_stop(tv_poller **pp) {
  tv_poller *p = *pp;
  *pp = NULL;
  if (!p) return;
  uv_poll_stop(&p->handle);
  if (p->in_cb) p->dead = 1; /* the async context is in use by napi_make_callback */
  else poller_release(p);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status; /* on error libuv has stopped the handle; still let JS drain the fd once */
  (void)events;
  tv_poller *p = (tv_poller *)h->data;
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb = NULL, global, result;
  if (p->cb && napi_get_reference_value(env, p->cb, &cb) == napi_ok && cb &&
      napi_get_global(env, &global) == napi_ok) {
    p->in_cb = 1;
    napi_status s = napi_make_callback(env, p->actx, global, cb, 0, NULL, &result);
    p->in_cb = 0;
    if (s == napi_pending_exception) {
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
  if (p->dead) poller_release(p);
}

static napi_value set_poller(napi_env env, tv_engine *e, tv_poller **pp, int fd, napi_value cb, const char *what) {
  napi_valuetype t;
  NAPI_CALL(env, napi_typeof(env, cb, &t));
  if (t == napi_undefined || t == napi_null) {
    poller_stop(pp);
    return undefined(env);
  }
  if (t != napi_function) {
    napi_throw_type_error(env, NULL, "callback must be a function");
    return NULL;
  }
  if (e->closed) {
    napi_throw_error(env, NULL, "PacketEngine is closed");
    return NULL;
  }
  if (fd < 0) {
    char msg[64];
    snprintf(msg, sizeof msg, "PacketEngine has no %s fd", what);
    napi_throw_error(env, NULL, msg);
    return NULL;
  }
  napi_ref ref;
  NAPI_CALL(env, napi_create_reference(env, cb, 1, &ref));
  if (*pp) { /* just swap the callback */
    napi_delete_reference(env, (*pp)->cb);
    (*pp)->cb = ref;
    return undefined(env);
  }
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    napi_delete_reference(env, ref);
    throw_napi(env, "napi_get_uv_event_loop");
    return NULL;
  }
  tv_poller *p = calloc(1, sizeof *p);
  if (!p) {
    napi_delete_reference(env, ref);
    return throw_sys(env, "poller", ENOMEM);
  }
  p->env = env;
  p->cb = ref;
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r != 0) {
    napi_delete_reference(env, ref);
    free(p);
    char msg[128];
    snprintf(msg, sizeof msg, "uv_poll_init(%s): %s", what, uv_strerror(r));
    napi_throw_error(env, uv_err_name(r), msg);
    return NULL;
  }
  p->handle.data = p;
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
    char msg[128];
    snprintf(msg, sizeof msg, "uv_poll_start(%s): %s", what, uv_strerror(r));
    napi_throw_error(env, uv_err_name(r), msg);
    return NULL;
  }
  *pp = p;
  return undefined(env);
}

/* ---------- engine lifecycle ---------- */

static void engine_shutdown(tv_engine *e) {
  if (e->closed) return;
  e->closed = 1;
  poller_stop(&e->udp_poll);
  poller_stop(&e->tun_poll);
  if (e->udp_fd >= 0) close(e->udp_fd);
  if (e->tun_fd >= 0) close(e->tun_fd); /* closing a non-persistent TUN deletes it */
  e->udp_fd = e->tun_fd = -1;
  tv_sessions_free(&e->sessions); /* cleanses key material now rather than at GC */
  free_scratch(e);
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

/* new Engine(udpFd, tunFd (-1: none), mtu). Takes ownership of both fds. */
static napi_value Engine_new(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3], self, target;
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, &self, NULL));
  NAPI_CALL(env, napi_get_new_target(env, info, &target));
  if (!target) {
    napi_throw_type_error(env, NULL, "Engine must be called with new");
    return NULL;
  }
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "Engine(udpFd, tunFd, mtu)");
    return NULL;
  }
  int32_t udp_fd, tun_fd, mtu;
  if (!arg_i32(env, argv[0], "udpFd", &udp_fd) || !arg_i32(env, argv[1], "tunFd", &tun_fd) ||
      !arg_i32(env, argv[2], "mtu", &mtu))
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
  if (!set_nonblock(udp_fd)) return throw_sys(env, "udpFd", errno);
  if (tun_fd >= 0 && !set_nonblock(tun_fd)) return throw_sys(env, "tunFd", errno);
  tv_engine *e = calloc(1, sizeof *e);
  if (!e) return throw_sys(env, "PacketEngine", ENOMEM);
  e->udp_fd = udp_fd;
  e->tun_fd = tun_fd < 0 ? -1 : tun_fd;
  e->family = family;
  e->mtu = mtu;
  if (napi_wrap(env, self, e, engine_finalize, NULL, NULL) != napi_ok) {
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
  if (mode < AUTH_NONE || mode > AUTH_CHACHA) {
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
  return undefined(env);
}

static napi_value Engine_sessionInfo(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  int32_t index;
  if (argc < 1) {
    napi_throw_type_error(env, NULL, "sessionInfo(index)");
    return NULL;
  }
  if (!arg_i32(env, argv[0], "index", &index)) return NULL;
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
  if (d[2] & ~3) return DR_BAD_MODE;
  int mode = d[2] & 3;
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
  if (port != s->ep.port || memcmp(ip, s->ep.ip, 16) != 0) tv_endpoint_set(&s->ep, e->family, ip, scope, port);
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

static int udp_recv(tv_engine *e, uint8_t *buf, int32_t *meta, uint8_t *addr, int cap) {
  if (e->closed || cap <= 0 || ensure_scratch(e, cap) < 0) return 0;
  for (int i = 0; i < cap; i++) {
    e->iov[i].iov_base = buf + (size_t)i * TV_SLOT_SIZE + TV_HEADROOM - TV_HEADER_LEN;
    e->iov[i].iov_len = TV_SLOT_SIZE - (TV_HEADROOM - TV_HEADER_LEN);
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
    uint8_t *d = buf + (size_t)i * TV_SLOT_SIZE + TV_HEADROOM - TV_HEADER_LEN;
    int32_t *m = meta + (size_t)i * TV_META_FIELDS;
    uint8_t *a = addr + (size_t)i * TV_ADDR_STRIDE;
    uint8_t ip[16];
    uint16_t port;
    uint32_t scope;
    tv_sockaddr_to_ip(&e->names[i], ip, &port, &scope);
    memcpy(a, ip, 16);
    tv_wr16(a + 16, port);
    a[18] = a[19] = 0;
    size_t len = e->msgs[i].msg_len;
    fill_meta(m, (int32_t)len, 0, TV_HEADROOM - TV_HEADER_LEN);
    int reason = classify(e, d, len, (e->msgs[i].msg_hdr.msg_flags & MSG_TRUNC) != 0, ip, port, scope, m, now);
    if (reason) {
      m[M_KIND] = -reason;
      m[M_LEN] = (int32_t)len;
      m[M_OFF] = TV_HEADROOM - TV_HEADER_LEN;
      e->st[ST_DROP_BASE + reason]++;
    }
  }
  e->st[ST_RX_DATAGRAMS] += (uint64_t)r;
  return r;
}

/* udpRecv(buf, meta, addr) -> n */
static napi_value Engine_udpRecv(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  void *buf, *meta, *addr;
  size_t bl, mc, al;
  if (argc < 3 || !arg_typed(env, argv[0], napi_uint8_array, "buf", &buf, &bl) ||
      !arg_typed(env, argv[1], napi_int32_array, "meta", &meta, &mc) ||
      !arg_typed(env, argv[2], napi_uint8_array, "addr", &addr, &al))
    return NULL;
  return make_i32(env, udp_recv(e, buf, meta, addr, batch_cap(bl, mc, al)));
}

/* tunRead(buf, meta) -> n */
static napi_value Engine_tunRead(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  void *bufv, *metav;
  size_t bl, mc;
  if (argc < 2 || !arg_typed(env, argv[0], napi_uint8_array, "buf", &bufv, &bl) ||
      !arg_typed(env, argv[1], napi_int32_array, "meta", &metav, &mc))
    return NULL;
  if (e->closed || e->tun_fd < 0) return make_i32(env, 0);
  uint8_t *buf = bufv;
  int32_t *meta = metav;
  int cap = batch_cap(bl, mc, (size_t)-1), n = 0;
  while (n < cap) {
    uint8_t *p = buf + (size_t)n * TV_SLOT_SIZE + TV_HEADROOM;
    ssize_t r = read(e->tun_fd, p, TV_SLOT_SIZE - TV_HEADROOM - TV_TAG_LEN);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break; /* EAGAIN: drained */
    int32_t *m = meta + (size_t)n * TV_META_FIELDS;
    fill_meta(m, (int32_t)r, KIND_DATA, TV_HEADROOM);
    m[M_SESSION] = -1;
    m[M_TYPE] = T_DATA;
    if (r > e->mtu) { /* larger than any tunnel can carry (TUN MTU set above the engine's) */
      m[M_KIND] = -DR_OVERSIZE;
      e->st[ST_DROP_BASE + DR_OVERSIZE]++;
    }
    n++;
  }
  e->st[ST_TUN_RX] += (uint64_t)n;
  return make_i32(env, n);
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

static void tun_write(tv_engine *e, const uint8_t *p, size_t len) {
  if (e->tun_fd < 0) {
    e->st[ST_TUN_WRITE_ERRORS]++;
    return;
  }
  ssize_t r;
  do r = write(e->tun_fd, p, len);
  while (r < 0 && errno == EINTR);
  if (r == (ssize_t)len) e->st[ST_TUN_TX]++;
  else e->st[ST_TUN_WRITE_ERRORS]++;
}

/* forward(buf, meta, n) */
static napi_value Engine_forward(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  void *bufv, *metav;
  size_t bl, mc;
  int32_t n;
  if (argc < 3 || !arg_typed(env, argv[0], napi_uint8_array, "buf", &bufv, &bl) ||
      !arg_typed(env, argv[1], napi_int32_array, "meta", &metav, &mc) || !arg_i32(env, argv[2], "n", &n))
    return NULL;
  int cap = batch_cap(bl, mc, (size_t)-1);
  if (n > cap) n = cap;
  if (e->closed || n <= 0 || ensure_scratch(e, n) < 0) return undefined(env);
  uint8_t *buf = bufv;
  int32_t *meta = metav;
  int nm = 0;
  for (int i = 0; i < n; i++) {
    int32_t *m = meta + (size_t)i * TV_META_FIELDS;
    int32_t action = m[M_ACTION], off = m[M_OFF], len = m[M_LEN];
    if (action < 0) continue;
    uint8_t *slot = buf + (size_t)i * TV_SLOT_SIZE;
    if (action == ACTION_TUN) {
      if (len <= 0 || off < 0 || off > TV_SLOT_SIZE - len) {
        e->st[ST_DROP_BASE + DR_OVERSIZE]++;
        continue;
      }
      if (tv_mss_clamp(slot + off, (size_t)len, e->mtu)) e->st[ST_MSS_CLAMPED]++;
      tun_write(e, slot + off, (size_t)len);
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
    int32_t hops = (m[M_HOPS] > 0 ? m[M_HOPS] : 0) + 1;
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
    e->iov[nm].iov_base = h;
    e->iov[nm].iov_len = TV_HEADER_LEN + (size_t)len + (s->mode == AUTH_NONE ? 0 : TV_TAG_LEN);
    struct msghdr *mh = &e->msgs[nm].msg_hdr;
    mh->msg_name = &s->ep.sa;
    mh->msg_namelen = s->ep.salen;
    mh->msg_iov = &e->iov[nm];
    mh->msg_iovlen = 1;
    mh->msg_control = NULL;
    mh->msg_controllen = 0;
    mh->msg_flags = 0;
    e->msg_sess[nm] = s;
    nm++;
  }
  if (nm) flush_udp(e, nm);
  return undefined(env);
}

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
  return set_poller(env, e, &e->udp_poll, e->udp_fd, argv[0], "UDP");
}

static napi_value Engine_onTunReadable(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  if (argc < 1) NAPI_CALL(env, napi_get_undefined(env, &argv[0]));
  return set_poller(env, e, &e->tun_poll, e->tun_fd, argv[0], "TUN");
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

/* ---------- module functions ---------- */

static napi_value OpenTun(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char name[64] = "";
  if (argc >= 1 && !arg_str(env, argv[0], "name", name, sizeof name)) return NULL;
  char out[64];
  const char *what = "openTun";
  int fd = tv_open_tun(name, out, sizeof out, &what);
  if (fd < 0) {
    int err = errno;
    char w[128];
    if (strcmp(what, "TUNSETIFF") == 0) snprintf(w, sizeof w, "TUNSETIFF %s", name);
    else snprintf(w, sizeof w, "%s", what);
    return throw_sys(env, w, err);
  }
  napi_value obj, vname;
  if (napi_create_object(env, &obj) != napi_ok || napi_create_string_utf8(env, out, NAPI_AUTO_LENGTH, &vname) != napi_ok ||
      napi_set_named_property(env, obj, "fd", make_i32(env, fd)) != napi_ok ||
      napi_set_named_property(env, obj, "name", vname) != napi_ok) {
    close(fd);
    throw_napi(env, "openTun");
    return NULL;
  }
  return obj;
}

/* openUdp(host, port, bufferBytes) */
static napi_value OpenUdp(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) {
    napi_throw_type_error(env, NULL, "openUdp(host, port, bufferBytes)");
    return NULL;
  }
  char host[128];
  int32_t port, bytes;
  if (!arg_str(env, argv[0], "host", host, sizeof host) || !arg_i32(env, argv[1], "port", &port) ||
      !arg_i32(env, argv[2], "bufferBytes", &bytes))
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
  napi_value obj;
  if (napi_create_object(env, &obj) != napi_ok ||
      napi_set_named_property(env, obj, "fd", make_i32(env, fd)) != napi_ok ||
      napi_set_named_property(env, obj, "port", make_i32(env, bound)) != napi_ok) {
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
    {"sendKeepalive", NULL, Engine_sendKeepalive, NULL, NULL, NULL, napi_default, NULL},
    {"sendRaw", NULL, Engine_sendRaw, NULL, NULL, NULL, napi_default, NULL},
    {"onUdpReadable", NULL, Engine_onUdpReadable, NULL, NULL, NULL, napi_default, NULL},
    {"onTunReadable", NULL, Engine_onTunReadable, NULL, NULL, NULL, napi_default, NULL},
    {"stats", NULL, Engine_stats, NULL, NULL, NULL, napi_default, NULL},
    {"close", NULL, Engine_close, NULL, NULL, NULL, napi_default, NULL},
  };
  napi_value cls;
  NAPI_CALL(env, napi_define_class(env, "Engine", NAPI_AUTO_LENGTH, Engine_new, NULL,
                                   sizeof methods / sizeof methods[0], methods, &cls));
  NAPI_CALL(env, napi_set_named_property(env, exports, "Engine", cls));
  if (!export_fn(env, exports, "openTun", OpenTun) || !export_fn(env, exports, "openUdp", OpenUdp) ||
      !export_fn(env, exports, "closeFd", CloseFd) || !export_fn(env, exports, "monotonicMs", MonotonicMs)) {
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
      !set_num(env, c, "MAX_MTU", TV_MAX_MTU)) {
    throw_napi(env, "module init");
    return NULL;
  }
  NAPI_CALL(env, napi_set_named_property(env, exports, "constants", c));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
