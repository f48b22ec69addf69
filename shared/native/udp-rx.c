/* UDP receive: each datagram verified in its own slot (classify), through recvmmsg or,
 * where the socket has it, UDP GRO. */
#include <node_api.h>

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/udp.h>

#include "crypto.h"
#include "engine.h"
#include "napi-util.h"
#include "net.h"
#include "replay.h"
#include "session.h"
#include "tv.h"

/* ---------- receive ---------- */

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
  if (type == T_DATA) s->rx_data++;
  m[M_KIND] = type == T_DATA ? KIND_DATA : KIND_KEEPALIVE;
  m[M_LEN] = (int32_t)plen;
  m[M_OFF] = TV_HEADROOM;
  m[M_SESSION] = (int32_t)s->index;
  return 0;
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
int udp_read(tv_engine *e, uint8_t *buf, int32_t *meta, uint8_t *addr, int cap) {
  return e->udp_gro ? udp_recv_gro(e, buf, meta, addr, cap) : udp_recv(e, buf, meta, addr, cap);
}

napi_value Engine_udpRecv(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  tv_batch_arg b;
  if (argc < 3 || !arg_batch(env, argv, 1, &b)) return NULL;
  return make_i32(env, udp_read(e, b.buf, b.meta, b.addr, b.cap));
}
