#include "replay.h"

#include <string.h>

void tv_replay_reset(tv_replay *r) { memset(r, 0, sizeof *r); }

static inline int bit_set(const tv_replay *r, uint64_t c) {
  return (int)((r->bits[(c >> 6) % TV_REPLAY_WORDS] >> (c & 63)) & 1);
}

int tv_replay_check(const tv_replay *r, uint64_t c) {
  if (c == 0) return 0;
  if (c > r->top) return 1;
  if (r->top - c >= TV_REPLAY_WINDOW) return 0;
  return !bit_set(r, c);
}

int tv_replay_update(tv_replay *r, uint64_t c) {
  if (!tv_replay_check(r, c)) return 0;
  if (c > r->top) {
    uint64_t from = r->top >> 6, to = c >> 6;
    uint64_t n = to - from;
    if (n > TV_REPLAY_WORDS) n = TV_REPLAY_WORDS;
    for (uint64_t i = 1; i <= n; i++) r->bits[(from + i) % TV_REPLAY_WORDS] = 0;
    r->top = c;
  }
  r->bits[(c >> 6) % TV_REPLAY_WORDS] |= (uint64_t)1 << (c & 63);
  return 1;
}
