/* N-API helpers of the packet engine: throwing errors, making values, and checking
 * arguments (a JS exception is pending whenever one returns NULL or false). */
#ifndef TV_NAPI_UTIL_H
#define TV_NAPI_UTIL_H

#include <node_api.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NAPI_CALL(env, call)        \
  do {                              \
    if ((call) != napi_ok) {        \
      throw_napi((env), #call);     \
      return NULL;                  \
    }                               \
  } while (0)

napi_value throw_sys(napi_env env, const char *what, int err);
void throw_napi(napi_env env, const char *what);
napi_value make_i32(napi_env env, int32_t v);
napi_value undefined(napi_env env);
bool set_num(napi_env env, napi_value obj, const char *key, double v);
bool arg_i32(napi_env env, napi_value v, const char *name, int32_t *out);
bool arg_u32(napi_env env, napi_value v, const char *name, uint32_t *out);
/* A TypeError naming the call's usage, unless an argument check already threw. */
void throw_usage(napi_env env, const char *usage);
bool arg_str(napi_env env, napi_value v, const char *name, char *buf, size_t size);
/* Typed array of the expected element type; the pointer already includes byteOffset. */
bool arg_typed(napi_env env, napi_value v, napi_typedarray_type want, const char *name, void **data,
               size_t *count);
/* Slots a batch of these arrays holds in common (addr_len (size_t)-1: no addr array). */
int batch_cap(size_t buf_len, size_t meta_count, size_t addr_len);

/* A batch passed as its arrays: buf, meta and, with_addr, addr (argv[0..2]) -> the arrays
 * and the slots they hold in common; false with a JS exception pending. */
typedef struct {
  uint8_t *buf, *addr;
  int32_t *meta;
  int cap;
} tv_batch_arg;

bool arg_batch(napi_env env, napi_value *argv, int with_addr, tv_batch_arg *b);

#endif
