#include "net.h"
#include "offload.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/if.h>
#include <linux/if_tun.h>

static int open_tun(const char *name, short flags, char *out_name, size_t out_len, const char **what) {
  /* O_NONBLOCK: a blocking read on the TUN would stall the event loop thread. */
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *what = "open /dev/net/tun";
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = flags;
  memcpy(ifr.ifr_name, name, strlen(name));
  if (ioctl(fd, TUNSETIFF, &ifr) < 0) {
    int err = errno;
    close(fd);
    errno = err;
    *what = "TUNSETIFF";
    return -1;
  }
  ifr.ifr_name[IFNAMSIZ - 1] = 0;
  snprintf(out_name, out_len, "%s", ifr.ifr_name);
  return fd;
}

int tv_open_tun(const char *name, int want_offload, char *out_name, size_t out_len, const char **what, int *offload,
                char *offload_err, size_t err_len) {
  *offload = 0;
  if (err_len) offload_err[0] = 0;
  if (strlen(name) >= IFNAMSIZ) {
    *what = "TUN name too long";
    errno = ENAMETOOLONG;
    return -1;
  }
  if (want_offload) {
    int fd = open_tun(name, IFF_TUN | IFF_NO_PI | IFF_VNET_HDR, out_name, out_len, what);
    if (fd >= 0) {
      int sz = TV_VNET_HDR_LEN;
      const char *step = NULL;
      if (ioctl(fd, TUNSETVNETHDRSZ, &sz) < 0) step = "TUNSETVNETHDRSZ";
      else if (ioctl(fd, TUNSETOFFLOAD, TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6) < 0) step = "TUNSETOFFLOAD";
      if (!step) {
        *offload = 1;
        return fd;
      }
      snprintf(offload_err, err_len, "%s: %s", step, strerror(errno));
      close(fd); /* a non-persistent TUN goes with its fd; reopened plain below */
    } else {
      snprintf(offload_err, err_len, "TUNSETIFF with IFF_VNET_HDR: %s", strerror(errno));
    }
  }
  return open_tun(name, IFF_TUN | IFF_NO_PI, out_name, out_len, what);
}
