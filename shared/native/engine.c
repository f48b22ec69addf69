/* N-API surface of the packet engine: module functions (openTun, openUdp, closeFd,
 * monotonicMs), the Engine class's lifecycle, statistics and test hooks, and Init, which
 * exports the methods the other files define (engine.h lists them). The hot paths
 * (udp-rx.c, tun-rx.c, tx.c, pumps.c) handle a whole batch per call and never allocate
 * per packet. Offloads (TUN TSO and coalescing, UDP GRO and GSO) stay below the per-slot
 * contract: every packet is still one slot with its own meta (docs/interfaces.md). */
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/udp.h>
#include <linux/if_tun.h>

#include "crypto.h"
#include "engine.h"
#include "napi-util.h"
#include "net.h"
#include "offload.h"
#include "session.h"
#include "tv.h"

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
  [ST_NATIVE_WAKEUPS] = "native_wakeups",
  [ST_DIRECT_SPOOFED] = "direct_spoofed",
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

tv_engine *unwrap_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv) {
  napi_value self;
  void *p = NULL;
  if (napi_get_cb_info(env, info, argc, argv, &self, NULL) != napi_ok) return NULL;
  if (napi_unwrap(env, self, &p) != napi_ok || !p) {
    napi_throw_type_error(env, NULL, "not a native PacketEngine");
    return NULL;
  }
  return (tv_engine *)p;
}

/* The engine of a method taking one int32 argument, and that argument; NULL (a JS
 * exception pending) if either is missing or wrong. */
tv_engine *engine_and_i32(napi_env env, napi_callback_info info, const char *usage, const char *name, int32_t *out) {
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

/* ---------- engine lifecycle ---------- */

static void engine_shutdown(tv_engine *e) {
  if (e->closed) return;
  e->closed = 1;
  mod_stop(e);
  native_wait_stop(e);
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

/* Test hook: __gmacTag(width, key32, nonce12, data) -> 16-byte tag through the wide GHASH
 * (width 512 or 256) or OpenSSL's GCM core (width 0); throws if that width is unsupported here. */
static napi_value GmacTag(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t width;
  void *key, *nonce, *data;
  size_t kl, nl, dl;
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "__gmacTag(width, key, nonce, data)");
    return NULL;
  }
  if (!arg_i32(env, argv[0], "width", &width) || !arg_typed(env, argv[1], napi_uint8_array, "key", &key, &kl) ||
      !arg_typed(env, argv[2], napi_uint8_array, "nonce", &nonce, &nl) ||
      !arg_typed(env, argv[3], napi_uint8_array, "data", &data, &dl))
    return NULL;
  if (kl != TV_KEY_LEN || nl != 12) {
    napi_throw_range_error(env, NULL, "__gmacTag: key must be 32 bytes and nonce 12");
    return NULL;
  }
  uint8_t tag[16];
  if (tv_gmac_tag(width, key, nonce, data, dl, tag) < 0) {
    napi_throw_error(env, NULL, width ? "__gmacTag: this GHASH width is not supported on this CPU" : "__gmacTag: OpenSSL error");
    return NULL;
  }
  napi_value b;
  void *unused;
  NAPI_CALL(env, napi_create_buffer_copy(env, sizeof tag, tag, &unused, &b));
  return b;
}

/* gmacBench(width, len, iters, rounds) -> ns per tag (the fastest round), or -1 where that
 * GHASH width is unsupported on this CPU. */
static napi_value GmacBench(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  int32_t width, len, iters, rounds;
  if (argc < 4) {
    napi_throw_type_error(env, NULL, "gmacBench(width, len, iters, rounds)");
    return NULL;
  }
  if (!arg_i32(env, argv[0], "width", &width) || !arg_i32(env, argv[1], "len", &len) ||
      !arg_i32(env, argv[2], "iters", &iters) || !arg_i32(env, argv[3], "rounds", &rounds))
    return NULL;
  if (len < 0 || len > 65536 || iters < 1 || iters > 10000000 || rounds < 1 || rounds > 1000) {
    napi_throw_range_error(env, NULL, "gmacBench: len 0..65536, iters 1..10000000, rounds 1..1000");
    return NULL;
  }
  napi_value r;
  NAPI_CALL(env, napi_create_double(env, tv_gmac_bench(width, (size_t)len, iters, rounds), &r));
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
      !export_fn(env, exports, "gmacImpl", GmacImpl) || !export_fn(env, exports, "__gmacTag", GmacTag) ||
      !export_fn(env, exports, "gmacBench", GmacBench)) {
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
