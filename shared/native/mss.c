#include "mss.h"
#include "tv.h"

static uint16_t bswap16(uint16_t v) { return (uint16_t)((v << 8) | (v >> 8)); }

/* RFC 1624 eq. 3: HC' = ~(~HC + ~m + m'). */
static uint16_t csum_replace(uint16_t hc, uint16_t m, uint16_t mn) {
  uint32_t s = (uint16_t)~hc + (uint32_t)(uint16_t)~m + mn;
  s = (s & 0xffff) + (s >> 16);
  s = (s & 0xffff) + (s >> 16);
  return (uint16_t)~s;
}

/* Finds the TCP header; returns its offset or 0, sets *end to the end of the IP packet. */
static size_t tcp_offset(const uint8_t *pkt, size_t len, size_t *end, int *is_v6) {
  if (len < 20) return 0;
  int ver = pkt[0] >> 4;
  if (ver == 4) {
    size_t ihl = (size_t)(pkt[0] & 15) * 4;
    size_t tot = tv_rd16(pkt + 2);
    if (ihl < 20 || tot > len || tot < ihl) return 0;
    if (pkt[9] != 6) return 0;
    if (tv_rd16(pkt + 6) & 0x1fff) return 0; /* not the first fragment: no TCP header */
    *end = tot;
    *is_v6 = 0;
    return ihl;
  }
  if (ver != 6 || len < 40) return 0;
  size_t tot = 40 + (size_t)tv_rd16(pkt + 4);
  if (tot > len) return 0;
  uint8_t nh = pkt[6];
  size_t off = 40;
  for (int i = 0; i < 8; i++) {
    if (nh == 6) {
      *end = tot;
      *is_v6 = 1;
      return off;
    }
    if (off + 8 > tot) return 0;
    if (nh == 44) { /* fragment header */
      if (tv_rd16(pkt + off + 2) & 0xfff8) return 0;
      nh = pkt[off];
      off += 8;
    } else if (nh == 0 || nh == 43 || nh == 60) { /* hop-by-hop, routing, destination options */
      nh = pkt[off];
      off += ((size_t)pkt[off + 1] + 1) * 8;
    } else {
      return 0;
    }
  }
  return 0;
}

int tv_mss_clamp(uint8_t *pkt, size_t len, int mtu) {
  size_t end = 0;
  int is_v6 = 0;
  size_t l4 = tcp_offset(pkt, len, &end, &is_v6);
  if (l4 == 0 || l4 + 20 > end) return 0;
  uint8_t *tcp = pkt + l4;
  if (!(tcp[13] & 0x02)) return 0; /* SYN (and SYN-ACK) only */
  size_t doff = (size_t)(tcp[12] >> 4) * 4;
  if (doff < 20 || l4 + doff > end) return 0;
  int t = mtu - (is_v6 ? 60 : 40);
  if (t <= 0) return 0;
  uint16_t target = (uint16_t)t;
  size_t o = 20;
  while (o < doff) {
    uint8_t kind = tcp[o];
    if (kind == 0) break;
    if (kind == 1) {
      o++;
      continue;
    }
    if (o + 1 >= doff) break;
    uint8_t ol = tcp[o + 1];
    if (ol < 2 || o + ol > doff) break;
    if (kind == 2 && ol == 4) {
      uint16_t old = tv_rd16(tcp + o + 2);
      if (old <= target) return 0;
      tv_wr16(tcp + o + 2, target);
      /* At an odd offset the field straddles two checksum words: its bytes count swapped. */
      uint16_t m = old, mn = target;
      if (o & 1) {
        m = bswap16(m);
        mn = bswap16(mn);
      }
      tv_wr16(tcp + 16, csum_replace(tv_rd16(tcp + 16), m, mn));
      return 1;
    }
    o += ol;
  }
  return 0;
}
