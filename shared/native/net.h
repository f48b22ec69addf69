/* TUN and UDP sockets, and the one address representation the engine uses. */
#ifndef TV_NET_H
#define TV_NET_H

#include <stdint.h>
#include <sys/socket.h>
#include <netinet/in.h>

/* A peer as the socket needs it (sa/salen) plus a family-independent form
 * (IPv4 as ::ffff:a.b.c.d) for comparison and for batch.addr. */
typedef struct {
  uint8_t ip[16];
  uint16_t port;
  uint32_t scope;
  union { struct sockaddr sa; struct sockaddr_in in4; struct sockaddr_in6 in6; } sa;
  socklen_t salen;
} tv_endpoint;

/* Parses a numeric IPv4/IPv6 address ("fe80::1%eth0" allowed). Returns 4 or 6, 0 if invalid. */
int tv_parse_host(const char *host, uint8_t ip[16], uint32_t *scope);
/* Builds ep for a socket of `family`. -1 (EAFNOSUPPORT) if an IPv6 peer is given to an AF_INET socket. */
int tv_endpoint_set(tv_endpoint *ep, int family, const uint8_t ip[16], uint32_t scope, uint16_t port);
/* Normalises a received source address. */
void tv_sockaddr_to_ip(const struct sockaddr_storage *ss, uint8_t ip[16], uint16_t *port, uint32_t *scope);
void tv_format_ip(const uint8_t ip[16], char *out, size_t outlen);
int tv_ip_is_v4mapped(const uint8_t ip[16]);

/* Both return an fd or -1 with errno set and *what naming the failed step.
 * tv_open_tun with want_offload: IFF_VNET_HDR, a 10-byte header and TUNSETOFFLOAD
 * (CSUM|TSO4|TSO6); if the kernel refuses any step the TUN is reopened plain,
 * *offload = 0 and offload_err says why. */
int tv_open_tun(const char *name, int want_offload, char *out_name, size_t out_len, const char **what, int *offload,
                char *offload_err, size_t err_len);
int tv_open_udp(const char *host, int port, int buf_bytes, int *bound_port, const char **what);
/* Family of a bound socket, or -1. */
int tv_socket_family(int fd);

#endif
