/* TUN reads: one packet per slot, a TSO super-packet (IFF_VNET_HDR) segmented into
 * slots, possibly across calls. */
#include <node_api.h>

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "engine.h"
#include "napi-util.h"
#include "offload.h"
#include "tv.h"

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
int tun_read(tv_engine *e, uint8_t *buf, int32_t *meta, int cap) {
  return e->tun_vnet ? tun_read_offload(e, buf, meta, cap) : tun_read_plain(e, buf, meta, cap);
}

napi_value Engine_tunRead(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  tv_batch_arg b;
  if (argc < 2 || !arg_batch(env, argv, 0, &b)) return NULL;
  if (e->closed) return make_i32(env, 0);
  return make_i32(env, tun_read(e, b.buf, b.meta, b.cap));
}
