/* The Engine's session methods: setSession, setSessionEndpoint, deleteSession,
 * sessionInfo (and setMtu), with the argument checks they share with the sends. */
#include <node_api.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include "crypto.h"
#include "engine.h"
#include "napi-util.h"
#include "net.h"
#include "replay.h"
#include "session.h"
#include "tv.h"

/* ---------- sessions ---------- */

bool parse_peer(napi_env env, tv_engine *e, napi_value vhost, napi_value vport, tv_endpoint *ep) {
  char host[128];
  int32_t port;
  if (!arg_str(env, vhost, "peerHost", host, sizeof host) || !arg_i32(env, vport, "peerPort", &port)) return false;
  if (port < 0 || port > 65535) {
    napi_throw_range_error(env, NULL, "peerPort must be 0..65535");
    return false;
  }
  uint8_t ip[16];
  uint32_t scope;
  if (!tv_parse_host(host, ip, &scope)) {
    char msg[192];
    snprintf(msg, sizeof msg, "invalid IP address '%s'", host);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  if (tv_endpoint_set(ep, e->family, ip, scope, (uint16_t)port) < 0) {
    char msg[192];
    snprintf(msg, sizeof msg, "cannot reach IPv6 peer %s from an IPv4 socket", host);
    napi_throw_error(env, "EAFNOSUPPORT", msg);
    return false;
  }
  return true;
}

static bool arg_index(napi_env env, napi_value v, uint32_t *out) {
  int32_t i;
  if (!arg_i32(env, v, "index", &i)) return false;
  if (i < 1 || i > TV_MAX_SESSION) {
    napi_throw_range_error(env, NULL, "session index must be 1..65535");
    return false;
  }
  *out = (uint32_t)i;
  return true;
}

/* setSession(index, peerHost, peerPort, remoteIndex, senderId, mode, txKey, rxKey) */
napi_value Engine_setSession(napi_env env, napi_callback_info info) {
  size_t argc = 8;
  napi_value argv[8];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  if (argc < 8) {
    napi_throw_type_error(env, NULL, "setSession: 8 arguments expected");
    return NULL;
  }
  if (e->closed) {
    napi_throw_error(env, NULL, "PacketEngine is closed");
    return NULL;
  }
  uint32_t index, remote_index, sender_id;
  int32_t mode;
  tv_endpoint ep;
  if (!arg_index(env, argv[0], &index) || !parse_peer(env, e, argv[1], argv[2], &ep) ||
      !arg_u32(env, argv[3], "remoteIndex", &remote_index) || !arg_u32(env, argv[4], "senderId", &sender_id) ||
      !arg_i32(env, argv[5], "mode", &mode))
    return NULL;
  if (mode < AUTH_NONE || mode > AUTH_GMAC) {
    napi_throw_range_error(env, NULL, "mode must be 0..3");
    return NULL;
  }
  void *txk, *rxk;
  size_t txl, rxl;
  if (!arg_typed(env, argv[6], napi_uint8_array, "txKey", &txk, &txl) ||
      !arg_typed(env, argv[7], napi_uint8_array, "rxKey", &rxk, &rxl))
    return NULL;
  if (mode != AUTH_NONE && (txl != TV_KEY_LEN || rxl != TV_KEY_LEN)) {
    napi_throw_range_error(env, NULL, "txKey and rxKey must be 32 bytes");
    return NULL;
  }
  tv_session *s = calloc(1, sizeof *s);
  if (!s) return throw_sys(env, "setSession", ENOMEM);
  s->index = index;
  s->remote_index = remote_index;
  s->sender_id = sender_id;
  s->mode = mode;
  s->ep = ep;
  tv_replay_reset(&s->replay);
  if (tv_key_init(&s->tx, mode, txk, txl, 1) < 0 || tv_key_init(&s->rx, mode, rxk, rxl, 0) < 0) {
    tv_session_free(s);
    napi_throw_error(env, NULL, "setSession: cipher initialisation failed");
    return NULL;
  }
  if (tv_session_put(&e->sessions, s) < 0) {
    int err = errno;
    tv_session_free(s);
    return throw_sys(env, "setSession", err);
  }
  e->session_epoch++; /* cached verdicts may name this index */
  return undefined(env);
}

napi_value Engine_setSessionEndpoint(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  uint32_t index;
  tv_endpoint ep;
  if (argc < 3 || !arg_index(env, argv[0], &index) || !parse_peer(env, e, argv[1], argv[2], &ep)) {
    throw_usage(env, "setSessionEndpoint(index, host, port)");
    return NULL;
  }
  tv_session *s = tv_session_get(&e->sessions, index);
  if (!s) {
    char msg[64];
    snprintf(msg, sizeof msg, "no session %u", index);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  s->ep = ep;
  s->no_gso = 0;
  return undefined(env);
}

/* setMtu(mtu): the TinyVR learns its tunnel MTU from the join answer, after the engine exists. */
napi_value Engine_setMtu(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  int32_t mtu;
  if (argc < 1 || !arg_i32(env, argv[0], "mtu", &mtu)) return NULL;
  if (mtu < TV_MIN_MTU || mtu > TV_MAX_MTU) {
    char msg[64];
    snprintf(msg, sizeof msg, "mtu must be %d..%d", TV_MIN_MTU, TV_MAX_MTU);
    napi_throw_range_error(env, NULL, msg);
    return NULL;
  }
  e->mtu = mtu;
  return undefined(env);
}

/* The engine and the session index of a call (index): NULL with an exception pending otherwise. */
tv_engine *engine_and_index(napi_env env, napi_callback_info info, const char *usage, uint32_t *index) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  if (argc < 1 || !arg_index(env, argv[0], index)) {
    throw_usage(env, usage);
    return NULL;
  }
  return e;
}

napi_value Engine_deleteSession(napi_env env, napi_callback_info info) {
  uint32_t index;
  tv_engine *e = engine_and_index(env, info, "deleteSession(index)", &index);
  if (!e) return NULL;
  tv_session_delete(&e->sessions, index);
  e->session_epoch++;
  return undefined(env);
}

napi_value Engine_sessionInfo(napi_env env, napi_callback_info info) {
  int32_t index;
  tv_engine *e = engine_and_i32(env, info, "sessionInfo(index)", "index", &index);
  if (!e) return NULL;
  tv_session *s = tv_session_get(&e->sessions, index);
  napi_value obj, host;
  if (!s) {
    NAPI_CALL(env, napi_get_null(env, &obj));
    return obj;
  }
  char hs[INET6_ADDRSTRLEN];
  tv_format_ip(s->ep.ip, hs, sizeof hs);
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_string_utf8(env, hs, NAPI_AUTO_LENGTH, &host));
  if (!set_num(env, obj, "lastRxMs", s->last_rx_ms) || !set_num(env, obj, "rxPackets", (double)s->rx_packets) ||
      !set_num(env, obj, "rxBytes", (double)s->rx_bytes) ||
      !set_num(env, obj, "rxDataPackets", (double)s->rx_data) || !set_num(env, obj, "txPackets", (double)s->tx_packets) ||
      !set_num(env, obj, "txBytes", (double)s->tx_bytes) ||
      napi_set_named_property(env, obj, "peerHost", host) != napi_ok ||
      !set_num(env, obj, "peerPort", s->ep.port)) {
    throw_napi(env, "sessionInfo");
    return NULL;
  }
  return obj;
}
