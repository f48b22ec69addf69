#include "session.h"
#include "tv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <openssl/crypto.h>

void tv_session_free(tv_session *s) {
  if (!s) return;
  tv_key_free(&s->tx);
  tv_key_free(&s->rx);
  OPENSSL_cleanse(s, sizeof *s);
  free(s);
}

int tv_session_put(tv_session_table *t, tv_session *s) {
  if (s->index == 0 || s->index > TV_MAX_SESSION) {
    errno = ERANGE;
    return -1;
  }
  if (s->index >= t->cap) {
    uint32_t ncap = t->cap ? t->cap : 64;
    while (ncap <= s->index) ncap *= 2;
    if (ncap > TV_MAX_SESSION + 1) ncap = TV_MAX_SESSION + 1;
    tv_session **n = realloc(t->slots, ncap * sizeof *n);
    if (!n) return -1;
    memset(n + t->cap, 0, (ncap - t->cap) * sizeof *n);
    t->slots = n;
    t->cap = ncap;
  }
  tv_session_free(t->slots[s->index]);
  t->slots[s->index] = s;
  return 0;
}

void tv_session_delete(tv_session_table *t, uint32_t index) {
  if (index == 0 || index >= t->cap) return;
  tv_session_free(t->slots[index]);
  t->slots[index] = NULL;
}

void tv_sessions_free(tv_session_table *t) {
  for (uint32_t i = 0; i < t->cap; i++) tv_session_free(t->slots[i]);
  free(t->slots);
  t->slots = NULL;
  t->cap = 0;
}
