/* Session table: index 1..65535 -> session, grown on demand. */
#ifndef TV_SESSION_H
#define TV_SESSION_H

#include <stdint.h>
#include "crypto.h"
#include "net.h"
#include "replay.h"

typedef struct {
  uint32_t index;
  uint32_t remote_index;
  uint32_t sender_id;
  int mode;
  tv_endpoint ep;
  int no_gso; /* UDP_SEGMENT refused on this path (e.g. datagram > path MTU): send plain */
  tv_keyctx tx, rx;
  uint64_t tx_counter; /* last counter sent; the next one is tx_counter + 1 */
  tv_replay replay;
  double last_rx_ms;
  uint64_t rx_packets, rx_bytes, tx_packets, tx_bytes;
  uint64_t rx_data; /* DATA datagrams among rx_packets (the rest: keepalives) */
} tv_session;

typedef struct {
  tv_session **slots;
  uint32_t cap; /* slots has cap entries; indexes >= cap are absent */
} tv_session_table;

static inline tv_session *tv_session_get(const tv_session_table *t, int64_t index) {
  if (index <= 0 || index >= (int64_t)t->cap) return NULL;
  return t->slots[index];
}

/* Stores s at s->index, freeing any previous session there. -1 on ENOMEM (s untouched). */
int tv_session_put(tv_session_table *t, tv_session *s);
void tv_session_delete(tv_session_table *t, uint32_t index);
void tv_session_free(tv_session *s);
void tv_sessions_free(tv_session_table *t);

#endif
