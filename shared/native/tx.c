/* Sending: sealing and sending datagrams (sendmmsg, UDP GSO) and writing packets to the
 * TUN (coalesced into GSO writes where it has offloads), per each slot's ACTION. */
#include <node_api.h>

#include <errno.h>
#include <poll.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <netinet/in.h>
#include <netinet/udp.h>

#include "crypto.h"
#include "engine.h"
#include "mss.h"
#include "napi-util.h"
#include "net.h"
#include "offload.h"
#include "session.h"
#include "tv.h"

/* ---------- send ---------- */

int ensure_scratch(tv_engine *e, int cap) {
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

void free_scratch(tv_engine *e) {
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
napi_value Engine_forward(napi_env env, napi_callback_info info) {
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
void forward_batch(tv_engine *e, uint8_t *buf, int32_t *meta, int n, int cap) {
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

napi_value Engine_sendKeepalive(napi_env env, napi_callback_info info) {
  uint32_t index;
  tv_engine *e = engine_and_index(env, info, "sendKeepalive(index)", &index);
  if (!e) return NULL;
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
napi_value Engine_sendRaw(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  tv_endpoint ep;
  void *data;
  size_t len;
  if (argc < 3 || !parse_peer(env, e, argv[0], argv[1], &ep) ||
      !arg_typed(env, argv[2], napi_uint8_array, "data", &data, &len)) {
    throw_usage(env, "sendRaw(host, port, data)");
    return NULL;
  }
  if (e->closed) return undefined(env);
  send_one(e, len ? data : (const uint8_t *)"", len, &ep);
  return undefined(env);
}
