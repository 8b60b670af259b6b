/* libFuzzer target of the model server's request body parsers (src/serve/body.c):
 * :predict, :classify, v2 infer (with and without the binary extension) and feedback,
 * for a one-input and a two-input (int64 + float) model. The first byte picks the
 * parser; the rest is the body. Besides not crashing or leaking: whenever jansson alone
 * can read a predict body, the values the fast number path fed are bit for bit the ones
 * jansson's numbers give (the server feeds what `slipway predict` would), and the JSON
 * parser reads any body as jansson reads it (../json_like_jansson.h). */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/serve.h"
#include "../json_like_jansson.h"

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

static sw_serve_signature one_input(void) {
  sw_serve_signature s;
  memset(&s, 0, sizeof s);
  s.n_in = 1;
  s.in[0] = (sw_serve_io){.name = "x", .dtype = SW_DTYPE_F32, .rank = 1, .shape = {4}, .per = 4};
  s.n_out = 1;
  s.out[0] = (sw_serve_io){.name = "out", .dtype = SW_DTYPE_F32, .rank = 1, .shape = {3}, .per = 3};
  return s;
}

static sw_serve_signature two_inputs(void) {
  sw_serve_signature s;
  memset(&s, 0, sizeof s);
  s.n_in = 2;
  s.in[0] = (sw_serve_io){.name = "cat", .dtype = SW_DTYPE_I64, .rank = 1, .shape = {1}, .per = 1};
  s.in[1] = (sw_serve_io){.name = "num", .dtype = SW_DTYPE_F32, .rank = 2, .shape = {1, 3}, .per = 3};
  s.n_out = 2;
  s.out[0] = (sw_serve_io){.name = "a", .dtype = SW_DTYPE_F32, .rank = 0, .per = 1};
  s.out[1] = (sw_serve_io){.name = "b", .dtype = SW_DTYPE_I64, .rank = 1, .shape = {2}, .per = 2};
  return s;
}

static volatile uint8_t sink;

static void touch(const sw_serve_signature *sig, const sw_serve_inputs *in) {
  CHECK(in->rows > 0);
  uint8_t acc = 0;
  for (size_t k = 0; k < sig->n_in; k++) {
    CHECK(in->in[k] != NULL);
    const uint8_t *p = in->in[k];
    size_t n = (size_t)(in->rows * sig->in[k].per) * sw_dtype_size(sig->in[k].dtype);
    for (size_t i = 0; i < n; i++) acc ^= p[i];
  }
  sink = acc;
}

/* Flattens jansson's numbers the way `slipway predict` does; false on anything else. */
static bool ref_flatten(const json_t *j, float *dst, int64_t cap, int64_t *n) {
  if (json_is_array(j)) {
    size_t i;
    const json_t *e;
    json_array_foreach(j, i, e) if (!ref_flatten(e, dst, cap, n)) return false;
    return true;
  }
  if (!json_is_number(j) || *n >= cap) return false;
  dst[(*n)++] = (float)json_number_value(j);
  return true;
}

static void differential(const char *text, size_t len, const sw_serve_inputs *in) {
  json_t *root = json_loadb(text, len, 0, NULL);
  const json_t *inst = json_object_get(root, "instances");
  if (json_is_array(inst) && (int64_t)json_array_size(inst) == in->rows && !json_is_object(json_array_get(inst, 0))) {
    float *ref = malloc((size_t)in->rows * 4 * sizeof *ref);
    int64_t n = 0;
    bool ok = ref && ref_flatten(inst, ref, in->rows * 4, &n) && n == in->rows * 4;
    if (ok) CHECK(!memcmp(ref, in->in[0], (size_t)n * sizeof *ref));
    free(ref);
  }
  json_decref(root);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  long live = sw_alloc_live();
  uint8_t which = data[0];
  const char *body = (const char *)data + 1;
  size_t len = size - 1;
  sw_serve_signature one = one_input(), two = two_inputs();
  const sw_serve_signature *sig = (which & 0x10) ? &two : &one;
  sw_serve_inputs in;
  switch (which & 0x0f) {
    case 0:
      if (!sw_serve_parse_predict(body, len, sig, &in)) {
        touch(sig, &in);
        if (sig == &one) differential(body, len, &in);
        sw_serve_inputs_clear(&in, sig->n_in);
      }
      break;
    case 1:
      if (!sw_serve_parse_classify(body, len, sig, &in)) {
        touch(sig, &in);
        sw_serve_inputs_clear(&in, sig->n_in);
      }
      break;
    case 2:
    case 3: {
      /* binary extension: the header's length in the next two bytes */
      size_t header = 0;
      if ((which & 0x0f) == 3 && len >= 2) {
        header = (size_t)(uint8_t)body[0] | (size_t)(uint8_t)body[1] << 8;
        body += 2;
        len -= 2;
      }
      if (!sw_serve_parse_infer(body, len, header, sig, &in)) {
        touch(sig, &in);
        bool any = false;
        for (size_t k = 0; k < sig->n_out; k++) any |= in.want_out[k];
        CHECK(any);
        sw_serve_inputs_clear(&in, sig->n_in);
      }
      break;
    }
    case 4: {
      sw_feedback_item *items = NULL;
      size_t n = 0;
      if (!sw_serve_parse_feedback(body, len, &items, &n)) {
        for (size_t i = 0; i < n; i++) {
          CHECK(items[i].id != NULL);
          CHECK(!items[i].is_name || items[i].name != NULL);
        }
        sw_feedback_items_free(items, n);
      }
      break;
    }
    default: {
      CHECK(sw_test_like_jansson(body, len));
      sw_body b;
      if (!sw_body_parse(body, len, &b)) {
        for (size_t i = 0; i < b.n_arrays; i++) {
          size_t want = 1;
          for (int d = 0; d < b.arrays[i].rank; d++) want *= (size_t)b.arrays[i].shape[d];
          CHECK(want == b.arrays[i].n);
        }
        sw_body_free(&b);
      }
      break;
    }
  }
  CHECK(sw_alloc_live() == live);
  return 0;
}
