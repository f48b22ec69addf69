/* Pollers (the fds' wake-ups, handed to JS or to a native pump) and wake-up moderation
 * (draining the data fds from a timer while wake-ups come densely). */
#include <node_api.h>
#include <uv.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>

#include "engine.h"
#include "napi-util.h"

/* ---------- pollers ---------- */

static void poller_closed(uv_handle_t *h) {
  tv_poller *p = h->data;
  if (--p->open_handles == 0) free(p);
}

static void poller_release(tv_poller *p) {
  pump_free(p->env, p->pump);
  p->pump = NULL;
  if (p->cb) napi_delete_reference(p->env, p->cb);
  if (p->actx) napi_async_destroy(p->env, p->actx);
  p->cb = NULL;
  p->actx = NULL;
  uv_close((uv_handle_t *)&p->handle, poller_closed);
  uv_close((uv_handle_t *)&p->idle, poller_closed);
}

void poller_stop(tv_poller **pp) {
  tv_poller *p = *pp;
  *pp = NULL;
  if (!p) return;
  uv_poll_stop(&p->handle);
  uv_idle_stop(&p->idle);
  p->idling = 0;
  if (p->in_cb) p->dead = 1; /* the async context is in use by napi_make_callback */
  else poller_release(p);
}

static unsigned long js_calls; /* JS callbacks run by any poller (native waiting ends after one) */

/* Calls the JS callback; with arg >= 0 it gets that number as its argument. */
void poller_invoke(tv_poller *p, int arg) {
  napi_env env = p->env;
  napi_handle_scope scope;
  if (napi_open_handle_scope(env, &scope) != napi_ok) return;
  napi_value cb = NULL, global, result, argv[1];
  if (p->cb && napi_get_reference_value(env, p->cb, &cb) == napi_ok && cb &&
      napi_get_global(env, &global) == napi_ok && (arg < 0 || napi_create_int32(env, arg, &argv[0]) == napi_ok)) {
    p->in_cb = 1;
    js_calls++;
    napi_status s = napi_make_callback(env, p->actx, global, cb, arg < 0 ? 0 : 1, argv, &result);
    p->in_cb = 0;
    if (s == napi_pending_exception) {
      napi_value err;
      if (napi_get_and_clear_last_exception(env, &err) == napi_ok) napi_fatal_exception(env, err);
    }
  }
  napi_close_handle_scope(env, scope);
}

static void on_idle(uv_idle_t *h);
static void mod_after_wake(tv_engine *e, uint64_t got);
static uint64_t engine_units(tv_engine *e);

static void poller_dispatch(tv_poller *p) {
  if (p->pump) pump_run(p);
  else poller_invoke(p, -1);
}

/* Keeps the idle handle running only while data is held back and the callback
 * consumes it (a callback that does not read must not make the loop spin). */
static void poller_after(tv_poller *p, uint64_t before, int from_idle) {
  if (p->dead) {
    poller_release(p);
    return;
  }
  int want = p->pending(p->ctx) && (!from_idle || p->progress(p->ctx) != before);
  if (want && !p->idling) uv_idle_start(&p->idle, on_idle);
  else if (!want && p->idling) uv_idle_stop(&p->idle);
  p->idling = want;
}

/* Runs the poller once, as on a wake-up (from the idle handle: from_idle). May release p. */
static void poller_wake(tv_poller *p, int from_idle) {
  uint64_t before = p->progress(p->ctx);
  poller_dispatch(p);
  poller_after(p, before, from_idle);
}

/* One data wake-up of p's fd, from libuv or from native waiting. */
static void poll_dispatch(tv_poller *p) {
  tv_engine *e = p->ctx;
  (*p->wakeups)++;
  uint64_t units = engine_units(e);
  poller_wake(p, 0);
  mod_after_wake(e, engine_units(e) - units);
}

static void native_wait(tv_engine *e, uv_loop_t *loop);
static void native_wait_forget_timer(tv_engine *e, int tfd);

static void on_poll(uv_poll_t *h, int status, int events) {
  (void)status; /* on error libuv has stopped the handle; still let JS drain the fd once */
  (void)events;
  tv_poller *p = (tv_poller *)h->data;
  tv_engine *e = p->ctx;
  uv_loop_t *loop = h->loop;
  poll_dispatch(p);
  native_wait(e, loop);
}

static void on_idle(uv_idle_t *h) { poller_wake((tv_poller *)h->data, 1); }

/* ---------- wake-up moderation ----------
 * On a VM, a process woken from epoll costs tens of µs (scheduler plus the hypervisor's
 * halt exit): at 1 Gbit/s that is more than handling the ~30 packets a wake-up brings,
 * and each send wakes the next router too. Like a NIC's adaptive interrupt moderation:
 * when wake-ups come densely, each brings little, and the packet rate is that of a bulk
 * transfer, stop polling the data fds and drain them from a timer every `us` µs instead.
 * Leave when the rate leaves that band: below it (the transfer ended: an idle path, a
 * ping, request/response traffic pay nothing) or above it (at full load the batches are
 * large anyway, and the added delay would cost a TCP sender's throughput where RTTs are
 * short). While moderated a packet waits at most `us` longer. */
#define TV_MOD_LIGHT 64                 /* a wake-up bringing fewer packets + datagrams may start moderation */
#define TV_MOD_MIN_RATE 40000           /* packets + datagrams per second below which it ends (~450 Mbit/s of full */
                                        /* packets: a request/response flow at a few thousand per second stays prompt) */
#define TV_MOD_MAX_RATE 150000          /* and above which it ends (~1.7 Gbit/s) */
#define TV_MOD_WINDOW_NS 2000000ull     /* the rate is measured over 2 ms windows (bursts average out) */

typedef struct tv_moderator {
  uv_poll_t handle; /* on the timerfd */
  int tfd;
  int us;
  int active;       /* the data fds are not polled; the timer drains them */
  uint64_t wake[2]; /* the two previous wake-ups (ns, CLOCK_MONOTONIC) */
  uint64_t win_start, win_units; /* the current rate window: start, engine_units() then */
  uint64_t rate;    /* packets + datagrams per second in the last complete window */
  tv_engine *e;     /* NULL once the engine let go of it */
} tv_moderator;

static uint64_t mono_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t engine_units(tv_engine *e) { return e->st[ST_RX_DATAGRAMS] + e->st[ST_TUN_RX]; }

/* Periodic while moderated: a tick costs no timer syscall besides the read. */
static int mod_arm(tv_moderator *m) {
  struct timespec t = {m->us / 1000000, (long)(m->us % 1000000) * 1000};
  struct itimerspec it = {t, t};
  return timerfd_settime(m->tfd, 0, &it, NULL);
}

/* Starts or stops libuv polling the data fds (moderation and native waiting take them over). */
static void set_data_polls(tv_engine *e, int on) {
  tv_poller *ps[2] = {e->udp_poll, e->tun_poll};
  for (int i = 0; i < 2; i++) {
    if (!ps[i] || ps[i]->dead) continue;
    if (on) uv_poll_start(&ps[i]->handle, UV_READABLE, on_poll);
    else uv_poll_stop(&ps[i]->handle);
  }
}

static void mod_leave(tv_moderator *m) {
  if (!m->active) return;
  m->active = 0;
  m->wake[0] = m->wake[1] = 0;
  struct itimerspec off = {{0, 0}, {0, 0}};
  timerfd_settime(m->tfd, 0, &off, NULL);
  if (m->e && !m->e->closed) set_data_polls(m->e, 1);
}

static void mod_measure(tv_moderator *m, tv_engine *e, uint64_t now) {
  uint64_t span = now - m->win_start;
  if (span < TV_MOD_WINDOW_NS) return;
  uint64_t units = engine_units(e);
  /* a window much longer than one (the path was idle) says nothing about the rate now */
  m->rate = span > 4 * TV_MOD_WINDOW_NS ? 0 : (units - m->win_units) * 1000000000ull / span;
  m->win_start = now;
  m->win_units = units;
}

/* After a data wake-up that read `got` packets + datagrams. */
static void mod_after_wake(tv_engine *e, uint64_t got) {
  tv_moderator *m = e->mod;
  if (!m || m->active || e->closed) return;
  uint64_t now = mono_ns();
  int dense = now - m->wake[0] < 2ull * 1000ull * (uint64_t)m->us; /* 3 wake-ups within 2 ticks */
  m->wake[0] = m->wake[1];
  m->wake[1] = now;
  mod_measure(m, e, now);
  if (!dense || got >= TV_MOD_LIGHT || m->rate < TV_MOD_MIN_RATE || m->rate > TV_MOD_MAX_RATE || mod_arm(m) < 0) return;
  m->active = 1;
  e->st[ST_MOD_ENTRIES]++;
  set_data_polls(e, 0);
}

/* A moderation tick: drain both data fds, then leave if the rate left the band. */
static void mod_tick(tv_moderator *m) {
  uint64_t expirations;
  if (read(m->tfd, &expirations, sizeof expirations) < 0 && errno == EAGAIN) return;
  tv_engine *e = m->e;
  if (!e || e->closed || !m->active) return;
  e->st[ST_MOD_TICKS]++;
  /* each may be released inside, and JS may close the engine: re-read before each */
  if (e->udp_poll && !e->udp_poll->dead) poller_wake(e->udp_poll, 0);
  if (m->e && !e->closed && e->tun_poll && !e->tun_poll->dead) poller_wake(e->tun_poll, 0);
  if (!m->e || e->closed) return;
  mod_measure(m, e, mono_ns());
  if (m->rate < TV_MOD_MIN_RATE || m->rate > TV_MOD_MAX_RATE) mod_leave(m);
}

static void on_mod_timer(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  tv_moderator *m = h->data;
  mod_tick(m);
  if (m->e && !m->e->closed) native_wait(m->e, h->loop);
}

static void mod_closed(uv_handle_t *h) {
  tv_moderator *m = h->data;
  close(m->tfd);
  free(m);
}

/* Turns moderation off: the data fds are polled again; the handle closes asynchronously. */
void mod_stop(tv_engine *e) {
  tv_moderator *m = e->mod;
  if (!m) return;
  mod_leave(m);
  native_wait_forget_timer(e, m->tfd);
  e->mod = NULL;
  m->e = NULL;
  uv_poll_stop(&m->handle);
  uv_close((uv_handle_t *)&m->handle, mod_closed);
}

static int udp_pending(void *ctx) {
  tv_engine *e = ctx;
  return !e->closed && e->gro_i < e->gro_n;
}
static uint64_t udp_progress(void *ctx) { return ((tv_engine *)ctx)->st[ST_RX_DATAGRAMS]; }
static int tun_pending(void *ctx) {
  tv_engine *e = ctx;
  return !e->closed && e->tso_active;
}
static uint64_t tun_progress(void *ctx) { return ((tv_engine *)ctx)->st[ST_TUN_RX]; }

/* ---------- native waiting ----------
 * Each turn of Node's event loop costs a router ~30 µs of CPU on a VM besides its own work
 * (an extra epoll_wait(0) for idle-time metrics, Node's check handle entering the V8
 * context and allocating an object, timers): at ping rates a quarter of its time per
 * packet, and every router on the path pays it on the critical path; while moderated, it
 * is paid on every tick. So after a data wake-up or a moderation tick the engine waits for
 * the next one itself, in an epoll set of its own holding the data fds, the moderation
 * timerfd and libuv's backend fd, and runs the pumps from there. It hands back to the loop
 * as soon as anything else may be due: libuv's fd readable (a signal, a control or status
 * socket, a worker's completion), the loop's next timer, data held back for the idle
 * handle, any JS callback (JS may have scheduled work). Only engines whose pollers all
 * have native pumps wait (a JS callback per wake-up would end every wait at once). While
 * it waits its fds are out of libuv's epoll set (else the backend fd would be readable
 * with them and end the wait); the loop adds them back when the wait ends. While
 * moderated the data fds stay in the wait set with no events (the ticks drain them).
 * TINYVINE_NATIVE_WAIT=0 turns it off (for comparisons). */
#define TV_WAIT_BACKEND 0
#define TV_WAIT_UDP 1
#define TV_WAIT_TUN 2
#define TV_WAIT_TIMER 3

static int native_wait_allowed(void) {
  static int allowed = -1;
  if (allowed < 0) {
    const char *v = getenv("TINYVINE_NATIVE_WAIT");
    allowed = !(v && strcmp(v, "0") == 0);
  }
  return allowed;
}

static int wait_ctl(int ep, int op, int fd, uint32_t events, uint32_t tag) {
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.u32 = tag;
  return epoll_ctl(ep, op, fd, &ev);
}

/* The engine's wait set (made on first use; the engine's data fds never change). */
static int wait_ready(tv_engine *e, uv_loop_t *loop) {
  if (e->wait_state) return e->wait_state > 0;
  e->wait_state = -1;
  int bfd = uv_backend_fd(loop);
  if (bfd < 0) return 0;
  int ep = epoll_create1(EPOLL_CLOEXEC);
  if (ep < 0) return 0;
  if (wait_ctl(ep, EPOLL_CTL_ADD, bfd, EPOLLIN, TV_WAIT_BACKEND) < 0 ||
      wait_ctl(ep, EPOLL_CTL_ADD, e->udp_fd, EPOLLIN, TV_WAIT_UDP) < 0 ||
      (e->tun_fd >= 0 && wait_ctl(ep, EPOLL_CTL_ADD, e->tun_fd, EPOLLIN, TV_WAIT_TUN) < 0)) {
    close(ep);
    return 0;
  }
  e->wait_ep = ep;
  e->wait_state = 1;
  e->wait_data = 1;
  e->wait_tfd = -1;
  return 1;
}

void native_wait_stop(tv_engine *e) {
  if (e->wait_state > 0) close(e->wait_ep);
  e->wait_state = -1;
}

/* The moderator's timerfd is about to close (a later one may get its number). */
static void native_wait_forget_timer(tv_engine *e, int tfd) {
  if (e->wait_state <= 0 || e->wait_tfd != tfd) return;
  epoll_ctl(e->wait_ep, EPOLL_CTL_DEL, tfd, NULL);
  e->wait_tfd = -1;
}

/* Every poller of e runs a native pump and none holds data back. */
static int wait_eligible(tv_engine *e) {
  tv_poller *ps[2] = {e->udp_poll, e->tun_poll};
  int n = 0;
  if (e->closed) return 0;
  for (int i = 0; i < 2; i++) {
    if (!ps[i]) continue;
    if (ps[i]->dead || !ps[i]->pump || ps[i]->idling) return 0;
    n++;
  }
  return n > 0;
}

static int moderated(tv_engine *e) { return e->mod && e->mod->active; }

/* The data fds wake the wait unless moderation drains them from its ticks. */
static int wait_sync_data(tv_engine *e) {
  int want = !moderated(e);
  if (want == e->wait_data) return 0;
  uint32_t ev = want ? EPOLLIN : 0;
  if (wait_ctl(e->wait_ep, EPOLL_CTL_MOD, e->udp_fd, ev, TV_WAIT_UDP) < 0 ||
      (e->tun_fd >= 0 && wait_ctl(e->wait_ep, EPOLL_CTL_MOD, e->tun_fd, ev, TV_WAIT_TUN) < 0))
    return -1;
  e->wait_data = want;
  return 0;
}

static void native_wait(tv_engine *e, uv_loop_t *loop) {
  if (!native_wait_allowed() || !wait_eligible(e) || !wait_ready(e, loop)) return;
  int bfd = uv_backend_fd(loop);
  tv_moderator *m = e->mod;
  if (m && m->tfd != e->wait_tfd) { /* (mod_stop forgot the one before) */
    if (wait_ctl(e->wait_ep, EPOLL_CTL_ADD, m->tfd, EPOLLIN, TV_WAIT_TIMER) < 0) return;
    e->wait_tfd = m->tfd;
  }
  if (wait_sync_data(e) < 0) return;
  /* Out of libuv's set. libuv drops a stopped fd lazily, on its next event: drop it now
   * (ENOENT if libuv had not added it yet: then it is not in the way either). */
  set_data_polls(e, 0);
  if (e->udp_poll) epoll_ctl(bfd, EPOLL_CTL_DEL, e->udp_fd, NULL);
  if (e->tun_poll) epoll_ctl(bfd, EPOLL_CTL_DEL, e->tun_fd, NULL);
  if (m) {
    uv_poll_stop(&m->handle);
    epoll_ctl(bfd, EPOLL_CTL_DEL, m->tfd, NULL);
  }
  unsigned long js0 = js_calls;
  for (;;) {
    uv_update_time(loop); /* the loop's clock stands still while we wait */
    int timeout = uv_backend_timeout(loop);
    if (timeout == 0 || wait_sync_data(e) < 0) break;
    struct epoll_event ev[4];
    int n = epoll_wait(e->wait_ep, ev, 4, timeout);
    if (n <= 0) break; /* the next timer is due (or a signal): the loop's turn */
    int backend = 0, udp = 0, tun = 0, tick = 0;
    for (int i = 0; i < n; i++) {
      switch (ev[i].data.u32) {
      case TV_WAIT_BACKEND: backend = 1; break;
      case TV_WAIT_UDP: udp = 1; break;
      case TV_WAIT_TUN: tun = 1; break;
      default: tick = 1;
      }
    }
    if (tick && e->mod) {
      e->st[ST_NATIVE_WAKEUPS]++;
      mod_tick(e->mod);
    }
    if (!e->closed && !moderated(e)) { /* (data events from before moderation began are stale) */
      e->st[ST_NATIVE_WAKEUPS] += (uint64_t)(udp + tun);
      if (udp && e->udp_poll && !e->udp_poll->dead) poll_dispatch(e->udp_poll);
      if (tun && !e->closed && e->tun_poll && !e->tun_poll->dead) poll_dispatch(e->tun_poll);
    }
    if (backend || js_calls != js0 || !wait_eligible(e)) break;
  }
  /* back to the loop: it polls the data fds again (unless moderation drains them), and the
   * moderation timer (JS may have replaced it meanwhile: the current one) */
  if (e->closed) return;
  if (!moderated(e)) set_data_polls(e, 1);
  if (e->mod) uv_poll_start(&e->mod->handle, UV_READABLE, on_mod_timer);
}

/* Starts (or retargets) polling fd. cb: the JS callback, run on every wake-up, or with a
 * pump only when a batch holds control messages (then it may be undefined). The poller
 * owns the pump from here on, also on error. */
napi_value set_poller(napi_env env, tv_engine *e, tv_poller **pp, int fd, napi_value cb, const char *what,
                      tv_pump *pump) {
  napi_ref ref = NULL;
  tv_poller *p = NULL;
  uv_loop_t *loop;
  char msg[128];
  napi_valuetype t;
  if (napi_typeof(env, cb, &t) != napi_ok) {
    throw_napi(env, "napi_typeof");
    goto fail;
  }
  int nullish = t == napi_undefined || t == napi_null;
  if (!pump && nullish) {
    poller_stop(pp);
    return undefined(env);
  }
  if (t != napi_function && !nullish) {
    napi_throw_type_error(env, NULL, "callback must be a function");
    goto fail;
  }
  if (e->closed || fd < 0) {
    if (e->closed) snprintf(msg, sizeof msg, "PacketEngine is closed");
    else snprintf(msg, sizeof msg, "PacketEngine has no %s fd", what);
    napi_throw_error(env, NULL, msg);
    goto fail;
  }
  if (!nullish && napi_create_reference(env, cb, 1, &ref) != napi_ok) {
    throw_napi(env, "napi_create_reference");
    goto fail;
  }
  if (*pp) { /* just swap the callback and the pump */
    if ((*pp)->cb) napi_delete_reference(env, (*pp)->cb);
    (*pp)->cb = ref;
    pump_free(env, (*pp)->pump);
    (*pp)->pump = pump;
    return undefined(env);
  }
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    throw_napi(env, "napi_get_uv_event_loop");
    goto fail;
  }
  if (!(p = calloc(1, sizeof *p))) {
    throw_sys(env, "poller", ENOMEM);
    goto fail;
  }
  int r = uv_poll_init(loop, &p->handle, fd);
  if (r != 0) {
    snprintf(msg, sizeof msg, "uv_poll_init(%s): %s", what, uv_strerror(r));
    napi_throw_error(env, uv_err_name(r), msg);
    goto fail;
  }
  /* from here on the poller owns ref and pump (poller_release frees them) */
  p->env = env;
  p->cb = ref;
  p->pump = pump;
  p->handle.data = p;
  uv_idle_init(loop, &p->idle); /* cannot fail */
  p->idle.data = p;
  p->open_handles = 2;
  int is_tun = pp == &e->tun_poll;
  p->pending = is_tun ? tun_pending : udp_pending;
  p->progress = is_tun ? tun_progress : udp_progress;
  p->wakeups = &e->st[is_tun ? ST_TUN_WAKEUPS : ST_UDP_WAKEUPS];
  p->ctx = e;
  napi_value resource, name;
  if (napi_create_object(env, &resource) != napi_ok ||
      napi_create_string_utf8(env, "TinyVinePoll", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_async_init(env, resource, name, &p->actx) != napi_ok) {
    poller_release(p);
    throw_napi(env, "napi_async_init");
    return NULL;
  }
  r = uv_poll_start(&p->handle, UV_READABLE, on_poll);
  if (r != 0) {
    poller_release(p);
    snprintf(msg, sizeof msg, "uv_poll_start(%s): %s", what, uv_strerror(r));
    napi_throw_error(env, uv_err_name(r), msg);
    return NULL;
  }
  *pp = p;
  return undefined(env);
fail: /* nothing started yet: the pump and the reference are ours to free */
  if (ref) napi_delete_reference(env, ref);
  pump_free(env, pump);
  free(p);
  return NULL;
}

/* onUdpReadable(cb) / onTunReadable(cb): cb on every wake-up of that fd; null stops it. */
static napi_value on_readable(napi_env env, napi_callback_info info, int tun) {
  size_t argc = 1;
  napi_value argv[1];
  tv_engine *e = unwrap_this(env, info, &argc, argv);
  if (!e) return NULL;
  if (argc < 1) NAPI_CALL(env, napi_get_undefined(env, &argv[0]));
  return tun ? set_poller(env, e, &e->tun_poll, e->tun_fd, argv[0], "TUN", NULL)
             : set_poller(env, e, &e->udp_poll, e->udp_fd, argv[0], "UDP", NULL);
}

napi_value Engine_onUdpReadable(napi_env env, napi_callback_info info) { return on_readable(env, info, 0); }
napi_value Engine_onTunReadable(napi_env env, napi_callback_info info) { return on_readable(env, info, 1); }

/* setModeration(us): 0 turns wake-up moderation off; 10..100000 µs turns it on (see
 * tv_moderator). Takes effect from the next wake-up. */
napi_value Engine_setModeration(napi_env env, napi_callback_info info) {
  int32_t us;
  tv_engine *e = engine_and_i32(env, info, "setModeration(us): 1 argument expected", "us", &us);
  if (!e) return NULL;
  if (us != 0 && (us < 10 || us > 100000)) {
    napi_throw_range_error(env, NULL, "moderation must be 0 (off) or 10..100000 µs");
    return NULL;
  }
  if (e->closed) {
    napi_throw_error(env, NULL, "PacketEngine is closed");
    return NULL;
  }
  if (us == 0) {
    mod_stop(e);
    return undefined(env);
  }
  if (e->mod) {
    e->mod->us = us;
    if (e->mod->active) mod_arm(e->mod);
    return undefined(env);
  }
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    throw_napi(env, "napi_get_uv_event_loop");
    return NULL;
  }
  tv_moderator *m = calloc(1, sizeof *m);
  if (!m) return throw_sys(env, "moderation", ENOMEM);
  m->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (m->tfd < 0) {
    int err = errno;
    free(m);
    return throw_sys(env, "timerfd_create", err);
  }
  int r = uv_poll_init(loop, &m->handle, m->tfd);
  if (r == 0) {
    m->handle.data = m;
    r = uv_poll_start(&m->handle, UV_READABLE, on_mod_timer);
    if (r != 0) {
      uv_close((uv_handle_t *)&m->handle, mod_closed);
    }
  } else {
    close(m->tfd);
    free(m);
  }
  if (r != 0) {
    char msg[128];
    snprintf(msg, sizeof msg, "uv_poll(timerfd): %s", uv_strerror(r));
    napi_throw_error(env, uv_err_name(r), msg);
    return NULL;
  }
  uv_unref((uv_handle_t *)&m->handle); /* the data fds keep the loop alive, not the timer */
  m->us = us;
  m->e = e;
  e->mod = m;
  return undefined(env);
}
