/* Internal header of the packet engine (engine.c and the files it is split into: wake.c,
 * udp-rx.c, tun-rx.c, tx.c, pumps.c, session-api.c): the engine's state, its statistics,
 * and the functions one of those files calls in another. Not part of the N-API surface. */
#ifndef TV_ENGINE_H
#define TV_ENGINE_H

#include <node_api.h>
#include <uv.h>

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "offload.h"
#include "session.h"
#include "tv.h"
#include "verdict-cache.h"

enum {
  ST_RX_DATAGRAMS, ST_TX_DATAGRAMS, ST_TUN_RX, ST_TUN_TX, ST_MSS_CLAMPED,
  ST_SEND_ERRORS, ST_TUN_WRITE_ERRORS, ST_TUN_GSO_READS, ST_TUN_SEGMENTS, ST_TUN_COALESCED_WRITES,
  ST_TUN_OFFLOAD_ERRORS, ST_UDP_GRO_DATAGRAMS, ST_UDP_GSO_SENDS, ST_UDP_GSO_FALLBACKS,
  ST_UDP_GRO_DIRECT, ST_UDP_GRO_MISPREDICT, ST_NOT_FOR_ME, ST_VC_ROUTED, ST_VC_RELAYED, ST_VC_JS_BATCHES, ST_UDP_WAKEUPS, ST_TUN_WAKEUPS,
  ST_MOD_TICKS, ST_MOD_ENTRIES, ST_NATIVE_WAKEUPS, ST_DIRECT_SPOOFED,
  ST_DROP_BASE, /* + DropReason (1..9) */
  ST_COUNT = ST_DROP_BASE + DR_COUNT
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

struct tv_moderator; /* wake-up moderation (wake.c) */

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
  /* native waiting (wake.c): its epoll set; state 0 not made yet, 1 made, -1 unavailable;
   * whether the data fds are armed in it; the moderation timerfd in it (-1 none) */
  int wait_ep, wait_state, wait_data, wait_tfd;
  uint64_t st[ST_COUNT];
} tv_engine;

static inline double monotonic_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static inline void fill_meta(int32_t *m, int32_t len, int32_t kind, int32_t off) {
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

/* engine.c */
tv_engine *unwrap_this(napi_env env, napi_callback_info info, size_t *argc, napi_value *argv);
tv_engine *engine_and_i32(napi_env env, napi_callback_info info, const char *usage, const char *name, int32_t *out);

/* wake.c: pollers and wake-up moderation */
void poller_stop(tv_poller **pp);
void poller_invoke(tv_poller *p, int arg);
void mod_stop(tv_engine *e);
void native_wait_stop(tv_engine *e);
napi_value set_poller(napi_env env, tv_engine *e, tv_poller **pp, int fd, napi_value cb, const char *what,
                      tv_pump *pump);
napi_value Engine_onUdpReadable(napi_env env, napi_callback_info info);
napi_value Engine_onTunReadable(napi_env env, napi_callback_info info);
napi_value Engine_setModeration(napi_env env, napi_callback_info info);

/* udp-rx.c: UDP receive */
int udp_read(tv_engine *e, uint8_t *buf, int32_t *meta, uint8_t *addr, int cap);
napi_value Engine_udpRecv(napi_env env, napi_callback_info info);

/* tun-rx.c: TUN reads */
int tun_read(tv_engine *e, uint8_t *buf, int32_t *meta, int cap);
napi_value Engine_tunRead(napi_env env, napi_callback_info info);

/* tx.c: sending (UDP and TUN) */
int ensure_scratch(tv_engine *e, int cap);
void free_scratch(tv_engine *e);
void forward_batch(tv_engine *e, uint8_t *buf, int32_t *meta, int n, int cap);
napi_value Engine_forward(napi_env env, napi_callback_info info);
napi_value Engine_sendKeepalive(napi_env env, napi_callback_info info);
napi_value Engine_sendRaw(napi_env env, napi_callback_info info);

/* pumps.c: the native pumps */
void pump_free(napi_env env, tv_pump *pump);
void pump_run(tv_poller *p);
napi_value Engine_tunPumpTo(napi_env env, napi_callback_info info);
napi_value Engine_udpPumpLocal(napi_env env, napi_callback_info info);
napi_value Engine_pumpTunNative(napi_env env, napi_callback_info info);
napi_value Engine_pumpUdpNative(napi_env env, napi_callback_info info);
napi_value Engine_routeUdpNative(napi_env env, napi_callback_info info);
napi_value Engine_routeTunNative(napi_env env, napi_callback_info info);

/* session-api.c: the session methods */
bool parse_peer(napi_env env, tv_engine *e, napi_value vhost, napi_value vport, tv_endpoint *ep);
tv_engine *engine_and_index(napi_env env, napi_callback_info info, const char *usage, uint32_t *index);
napi_value Engine_setSession(napi_env env, napi_callback_info info);
napi_value Engine_setSessionEndpoint(napi_env env, napi_callback_info info);
napi_value Engine_setMtu(napi_env env, napi_callback_info info);
napi_value Engine_deleteSession(napi_env env, napi_callback_info info);
napi_value Engine_sessionInfo(napi_env env, napi_callback_info info);

#endif
