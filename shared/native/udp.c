#include "net.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <net/if.h>

static const uint8_t v4mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

int tv_ip_is_v4mapped(const uint8_t ip[16]) { return memcmp(ip, v4mapped_prefix, 12) == 0; }

int tv_parse_host(const char *host, uint8_t ip[16], uint32_t *scope) {
  struct in_addr a4;
  *scope = 0;
  if (inet_pton(AF_INET, host, &a4) == 1) {
    memcpy(ip, v4mapped_prefix, 12);
    memcpy(ip + 12, &a4, 4);
    return 4;
  }
  char tmp[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
  size_t n = strlen(host);
  if (n >= sizeof tmp) return 0;
  memcpy(tmp, host, n + 1);
  char *pct = strchr(tmp, '%');
  if (pct) {
    *pct = 0;
    unsigned idx = if_nametoindex(pct + 1);
    if (idx == 0) {
      char *end;
      unsigned long v = strtoul(pct + 1, &end, 10);
      if (*end || end == pct + 1) return 0;
      idx = (unsigned)v;
    }
    *scope = idx;
  }
  if (inet_pton(AF_INET6, tmp, ip) != 1) return 0;
  return 6;
}

int tv_endpoint_set(tv_endpoint *ep, int family, const uint8_t ip[16], uint32_t scope, uint16_t port) {
  memset(ep, 0, sizeof *ep);
  memcpy(ep->ip, ip, 16);
  ep->port = port;
  ep->scope = scope;
  if (family == AF_INET) {
    if (!tv_ip_is_v4mapped(ip)) {
      errno = EAFNOSUPPORT;
      return -1;
    }
    ep->sa.in4.sin_family = AF_INET;
    ep->sa.in4.sin_port = htons(port);
    memcpy(&ep->sa.in4.sin_addr, ip + 12, 4);
    ep->salen = sizeof ep->sa.in4;
  } else {
    ep->sa.in6.sin6_family = AF_INET6;
    ep->sa.in6.sin6_port = htons(port);
    memcpy(&ep->sa.in6.sin6_addr, ip, 16);
    ep->sa.in6.sin6_scope_id = scope;
    ep->salen = sizeof ep->sa.in6;
  }
  return 0;
}

void tv_sockaddr_to_ip(const struct sockaddr_storage *ss, uint8_t ip[16], uint16_t *port, uint32_t *scope) {
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *s4 = (const struct sockaddr_in *)ss;
    memcpy(ip, v4mapped_prefix, 12);
    memcpy(ip + 12, &s4->sin_addr, 4);
    *port = ntohs(s4->sin_port);
    *scope = 0;
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)ss;
    memcpy(ip, &s6->sin6_addr, 16);
    *port = ntohs(s6->sin6_port);
    *scope = s6->sin6_scope_id;
  } else {
    memset(ip, 0, 16);
    *port = 0;
    *scope = 0;
  }
}

void tv_format_ip(const uint8_t ip[16], char *out, size_t outlen) {
  if (tv_ip_is_v4mapped(ip)) {
    if (!inet_ntop(AF_INET, ip + 12, out, (socklen_t)outlen)) snprintf(out, outlen, "?");
  } else {
    if (!inet_ntop(AF_INET6, ip, out, (socklen_t)outlen)) snprintf(out, outlen, "?");
  }
}

int tv_socket_family(int fd) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) return -1;
  return ss.ss_family;
}

/* The *FORCE variants bypass net.core.{r,w}mem_max when we have CAP_NET_ADMIN. */
static void set_buf(int fd, int force_opt, int opt, int bytes) {
  if (setsockopt(fd, SOL_SOCKET, force_opt, &bytes, sizeof bytes) == 0) return;
  (void)setsockopt(fd, SOL_SOCKET, opt, &bytes, sizeof bytes); /* best effort: the kernel caps it */
}

int tv_open_udp(const char *host, int port, int buf_bytes, int *bound_port, const char **what) {
  uint8_t ip[16];
  uint32_t scope = 0;
  int fam;
  if (host[0] == 0) {
    memset(ip, 0, 16);
    fam = 6;
  } else {
    fam = tv_parse_host(host, ip, &scope);
  }
  if (fam == 0) {
    *what = "invalid host";
    errno = EINVAL;
    return -1;
  }
  int family = fam == 4 ? AF_INET : AF_INET6;
  int fd = socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *what = "socket";
    return -1;
  }
  if (family == AF_INET6) {
    int off = 0; /* dual-stack: IPv4 peers arrive as ::ffff:a.b.c.d */
    if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) < 0) {
      *what = "setsockopt IPV6_V6ONLY";
      goto fail;
    }
  }
  if (buf_bytes > 0) {
    set_buf(fd, SO_RCVBUFFORCE, SO_RCVBUF, buf_bytes);
    set_buf(fd, SO_SNDBUFFORCE, SO_SNDBUF, buf_bytes);
  }
  tv_endpoint ep;
  tv_endpoint_set(&ep, family, ip, scope, (uint16_t)port);
  if (bind(fd, &ep.sa.sa, ep.salen) < 0) {
    *what = "bind";
    goto fail;
  }
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  if (getsockname(fd, (struct sockaddr *)&ss, &len) < 0) {
    *what = "getsockname";
    goto fail;
  }
  uint8_t bip[16];
  uint16_t bport;
  uint32_t bscope;
  tv_sockaddr_to_ip(&ss, bip, &bport, &bscope);
  *bound_port = bport;
  return fd;
fail:;
  int err = errno;
  close(fd);
  errno = err;
  return -1;
}
