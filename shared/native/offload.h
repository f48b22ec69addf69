/* TUN offload helpers: Internet checksums, TSO segmentation of a super-packet read
 * from a TUN with a virtio_net_hdr, and coalescing of TCP segments back into one
 * GSO write. Pure functions over memory; the engine does the I/O. */
#ifndef TV_OFFLOAD_H
#define TV_OFFLOAD_H

#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>
#include <linux/virtio_net.h>

/* We ask for the plain 10-byte virtio_net_hdr: the 12-byte variant only adds
 * num_buffers (mergeable rx buffers), which a TUN never uses. */
#define TV_VNET_HDR_LEN 10
#define TV_VNET_HDR_MAX 12
/* Largest packet a TUN hands over with TSO (gso_max_size 64 KB) plus headroom. */
#define TV_TUN_READ_MAX (TV_VNET_HDR_MAX + 65536 + 256)
/* Segments per coalesced TUN write; the IP length field caps the bytes at 65535. */
#define TV_COALESCE_MAX 64

/* One's complement sum of native-endian words; fold with tv_csum_fold. Even offsets only. */
uint64_t tv_csum_add(const uint8_t *p, size_t n, uint64_t sum);
/* Folds to 16 bits, still in native byte order (store with memcpy, not tv_wr16). */
uint16_t tv_csum_fold(uint64_t sum);
/* Pseudo-header sum for TCP over IPv4 (ip = IPv4 header) or IPv6 (ip = IPv6 header). */
uint64_t tv_pseudo_sum(const uint8_t *ip, int v6, uint32_t l4_len, uint8_t proto);
/* Recomputes the IPv4 header checksum. */
void tv_ip4_csum(uint8_t *ip);

/* Completes a CHECKSUM_PARTIAL packet (VIRTIO_NET_HDR_F_NEEDS_CSUM): the field at
 * start+offset holds the pseudo-header sum. -1 if start/offset lie outside pkt. */
int tv_csum_complete(uint8_t *pkt, size_t len, size_t start, size_t offset);

/* Segmentation state of one TSO super-packet (kept across tunRead calls when the
 * batch fills up in the middle of it). */
typedef struct {
  const uint8_t *pkt; /* IP packet, no vnet header */
  size_t len;
  size_t l4, hl;      /* TCP header offset, IP + TCP header length */
  size_t mss;
  size_t done;        /* payload bytes already emitted */
  uint32_t seg;       /* segments already emitted */
  uint32_t seq0;
  uint16_t id0;
  uint8_t flags0;
  int v6;
} tv_tso;

/* 0 if pkt is a TCPv4/TCPv6 GSO packet we can segment; -1 if malformed. */
int tv_tso_init(tv_tso *t, const uint8_t *pkt, size_t len, const struct virtio_net_hdr *vh);
/* Size of the next segment (0 when done). */
size_t tv_tso_next_len(const tv_tso *t);
/* Writes the next segment (tv_tso_next_len bytes) to out with lengths, IPv4 id and
 * header checksum, sequence number, flags and a full TCP checksum fixed. */
size_t tv_tso_next(tv_tso *t, uint8_t *out);
static inline int tv_tso_done(const tv_tso *t) { return t->seg > 0 && t->done >= t->len - t->hl; }

/* Coalescing of consecutive TCP segments of one flow into one GSO write. */
typedef struct {
  uint8_t *first;  /* first segment; its headers are patched by tv_coalesce_finish */
  size_t first_len;
  size_t l4, hl;
  int v6;
  int count;
  int closed;      /* a shorter or PSH segment ends the group */
  size_t gso;      /* payload bytes per segment (the first segment's) */
  size_t total;    /* IP packet length so far */
  uint32_t next_seq;
  int niov;
  struct iovec iov[TV_COALESCE_MAX + 1]; /* [0] is the vnet header, filled by the engine */
} tv_coalesce;

/* 1 if pkt is a TCP segment that may join a group: IPv4 without options or fragments,
 * or IPv6 without extension headers; only ACK (+PSH); non-empty payload; IP length == len. */
int tv_tcp_coalescable(const uint8_t *pkt, size_t len, size_t *l4, size_t *hl);
void tv_coalesce_start(tv_coalesce *c, uint8_t *pkt, size_t len, size_t l4, size_t hl);
/* Appends pkt if it continues the group (same flow and headers, contiguous sequence,
 * size rules); 1 if appended, 0 if the group must be flushed first. */
int tv_coalesce_append(tv_coalesce *c, uint8_t *pkt, size_t len, size_t l4, size_t hl);
/* Patches the first segment into the super-packet header and fills vh (GSO when
 * count > 1, otherwise a zeroed header: the kernel verifies the checksum itself). */
void tv_coalesce_finish(tv_coalesce *c, struct virtio_net_hdr *vh);

#endif
