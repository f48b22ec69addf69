/* N-API helpers of the packet engine: errors, values, argument checks. */
#include <node_api.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "napi-util.h"
#include "tv.h"

static const char *errno_code(int err) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
  return strerrorname_np(err);
#else
  (void)err;
  return NULL;
#endif
}

napi_value throw_sys(napi_env env, const char *what, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s", what, strerror(err));
  napi_throw_error(env, errno_code(err), msg);
  return NULL;
}

void throw_napi(napi_env env, const char *what) {
  const napi_extended_error_info *info = NULL;
  napi_get_last_error_info(env, &info);
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (pending) return;
  char msg[256];
  snprintf(msg, sizeof msg, "%s failed: %s", what, info && info->error_message ? info->error_message : "N-API error");
  napi_throw_error(env, NULL, msg);
}

napi_value make_i32(napi_env env, int32_t v) {
  napi_value r = NULL;
  napi_create_int32(env, v, &r);
  return r;
}

napi_value undefined(napi_env env) {
  napi_value r = NULL;
  napi_get_undefined(env, &r);
  return r;
}

bool set_num(napi_env env, napi_value obj, const char *key, double v) {
  napi_value n;
  return napi_create_double(env, v, &n) == napi_ok && napi_set_named_property(env, obj, key, n) == napi_ok;
}

static bool arg_number(napi_env env, napi_value v, const char *name) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_number) return true;
  char msg[96];
  snprintf(msg, sizeof msg, "%s must be a number", name);
  napi_throw_type_error(env, NULL, msg);
  return false;
}

bool arg_i32(napi_env env, napi_value v, const char *name, int32_t *out) {
  return arg_number(env, v, name) && napi_get_value_int32(env, v, out) == napi_ok;
}

bool arg_u32(napi_env env, napi_value v, const char *name, uint32_t *out) {
  return arg_number(env, v, name) && napi_get_value_uint32(env, v, out) == napi_ok;
}

void throw_usage(napi_env env, const char *usage) {
  bool pending = false;
  napi_is_exception_pending(env, &pending);
  if (!pending) napi_throw_type_error(env, NULL, usage);
}

bool arg_str(napi_env env, napi_value v, const char *name, char *buf, size_t size) {
  size_t len = 0;
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_string) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a string", name);
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return false;
  if (len >= size) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s too long", name);
    napi_throw_range_error(env, NULL, msg);
    return false;
  }
  return napi_get_value_string_utf8(env, v, buf, size, &len) == napi_ok;
}

/* Typed array of the expected element type; the pointer already includes byteOffset. */
bool arg_typed(napi_env env, napi_value v, napi_typedarray_type want, const char *name, void **data,
               size_t *count) {
  bool is = false;
  napi_typedarray_type t;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &t, count, data, &ab, &off) != napi_ok || t != want) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a%s", name, want == napi_int32_array ? "n Int32Array" : " Buffer");
    napi_throw_type_error(env, NULL, msg);
    return false;
  }
  if (*count == 0) *data = NULL;
  return true;
}

int batch_cap(size_t buf_len, size_t meta_count, size_t addr_len) {
  size_t cap = buf_len / TV_SLOT_SIZE;
  if (meta_count / TV_META_FIELDS < cap) cap = meta_count / TV_META_FIELDS;
  if (addr_len != (size_t)-1 && addr_len / TV_ADDR_STRIDE < cap) cap = addr_len / TV_ADDR_STRIDE;
  if (cap > TV_MAX_BATCH) cap = TV_MAX_BATCH;
  return (int)cap;
}

bool arg_batch(napi_env env, napi_value *argv, int with_addr, tv_batch_arg *b) {
  void *buf, *meta, *addr = NULL;
  size_t bl, mc, al = (size_t)-1;
  if (!arg_typed(env, argv[0], napi_uint8_array, "buf", &buf, &bl) || !arg_typed(env, argv[1], napi_int32_array, "meta", &meta, &mc) ||
      (with_addr && !arg_typed(env, argv[2], napi_uint8_array, "addr", &addr, &al)))
    return false;
  b->buf = buf, b->meta = meta, b->addr = addr, b->cap = batch_cap(bl, mc, al);
  return true;
}
