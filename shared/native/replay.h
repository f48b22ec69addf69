/* Anti-replay: highest counter seen plus a 1024-counter window below it. */
#ifndef TV_REPLAY_H
#define TV_REPLAY_H

#include <stdint.h>

#define TV_REPLAY_WINDOW 1024
/* One word more than the window so advancing can clear whole words without
 * erasing bits that are still inside the window (as WireGuard does). */
#define TV_REPLAY_WORDS (TV_REPLAY_WINDOW / 64 + 1)

typedef struct {
  uint64_t top;
  uint64_t bits[TV_REPLAY_WORDS];
} tv_replay;

void tv_replay_reset(tv_replay *r);
/* 1 if c would be accepted (not yet seen, inside or above the window). Read-only. */
int tv_replay_check(const tv_replay *r, uint64_t c);
/* Records c; 1 if accepted, 0 if it is a replay or too old. */
int tv_replay_update(tv_replay *r, uint64_t c);

#endif
