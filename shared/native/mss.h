#ifndef TV_MSS_H
#define TV_MSS_H

#include <stddef.h>
#include <stdint.h>

/* If pkt is a TCP SYN (IPv4 or IPv6) whose MSS option exceeds what fits in `mtu`
 * (mtu-40 for IPv4, mtu-60 for IPv6), lowers it and patches the TCP checksum.
 * Returns 1 if the packet was changed. Never reads outside pkt[0..len). */
int tv_mss_clamp(uint8_t *pkt, size_t len, int mtu);

#endif
