#include "net.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <linux/if.h>
#include <linux/if_tun.h>

int tv_open_tun(const char *name, char *out_name, size_t out_len, const char **what) {
  if (strlen(name) >= IFNAMSIZ) {
    *what = "TUN name too long";
    errno = ENAMETOOLONG;
    return -1;
  }
  /* O_NONBLOCK: a blocking read on the TUN would stall the event loop thread. */
  int fd = open("/dev/net/tun", O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    *what = "open /dev/net/tun";
    return -1;
  }
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
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
