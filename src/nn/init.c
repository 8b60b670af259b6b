/* Weight initialization: constant fills and the Glorot (Xavier) and He (Kaiming)
 * families, drawn from the counter-based RNG so a model's starting weights are a pure
 * function of (seed, stream, counter) and a checkpoint can reproduce them. */
#include <math.h>
#include <string.h>

#include "slipway/nn.h"

static const struct {
  const char *name;
  sw_init_kind kind;
} init_names[] = {
    {"zeros", SW_INIT_ZEROS},
    {"ones", SW_INIT_ONES},
    {"glorot_uniform", SW_INIT_GLOROT_UNIFORM},
    {"glorot_normal", SW_INIT_GLOROT_NORMAL},
    {"he_uniform", SW_INIT_HE_UNIFORM},
    {"he_normal", SW_INIT_HE_NORMAL},
    {"uniform", SW_INIT_UNIFORM},
};

#define INIT_NAME_COUNT (sizeof init_names / sizeof init_names[0])

sw_status sw_init_kind_from_name(const char *name, sw_init_kind *out) {
  SW_ASSERT(out != NULL);
  if (name != NULL) {
    for (size_t i = 0; i < INIT_NAME_COUNT; i++) {
      if (strcmp(name, init_names[i].name) == 0) {
        *out = init_names[i].kind;
        return SW_STATUS_OK;
      }
    }
  }
  return sw_error(SW_STATUS_INVALID,
                  "unknown initializer \"%s\" (known: zeros, ones, glorot_uniform, "
                  "glorot_normal, he_uniform, he_normal, uniform)",
                  name != NULL ? name : "(null)");
}

/* n values of U(-a, a): one sw_rng_uniform (53 bits) per value, in index order. */
static void fill_uniform(sw_rng *r, float *w, size_t n, double a) {
  for (size_t i = 0; i < n; i++) w[i] = (float)(a * (2.0 * sw_rng_uniform(r) - 1.0));
}

/* n values of N(0, std^2): one sw_rng_normal (two uniforms) per value, in index order. */
static void fill_normal(sw_rng *r, float *w, size_t n, double std) {
  for (size_t i = 0; i < n; i++) w[i] = (float)(std * sw_rng_normal(r));
}

/* Fans below 1 (a layer without inputs or outputs) count as 1, so the scales stay
 * finite. ZEROS and ONES draw nothing from r. */
void sw_init_fill(sw_rng *r, sw_init_kind kind, float *w, size_t n, int64_t fan_in, int64_t fan_out) {
  SW_ASSERT(n == 0 || w != NULL);
  const double in = fan_in >= 1 ? (double)fan_in : 1.0;
  const double out = fan_out >= 1 ? (double)fan_out : 1.0;
  switch (kind) {
  case SW_INIT_ZEROS:
    for (size_t i = 0; i < n; i++) w[i] = 0.0f;
    break;
  case SW_INIT_ONES:
    for (size_t i = 0; i < n; i++) w[i] = 1.0f;
    break;
  case SW_INIT_GLOROT_UNIFORM:
    SW_ASSERT(r != NULL);
    fill_uniform(r, w, n, sqrt(6.0 / (in + out)));
    break;
  case SW_INIT_GLOROT_NORMAL:
    SW_ASSERT(r != NULL);
    fill_normal(r, w, n, sqrt(2.0 / (in + out)));
    break;
  case SW_INIT_HE_UNIFORM:
    SW_ASSERT(r != NULL);
    fill_uniform(r, w, n, sqrt(6.0 / in));
    break;
  case SW_INIT_HE_NORMAL:
    SW_ASSERT(r != NULL);
    fill_normal(r, w, n, sqrt(2.0 / in));
    break;
  case SW_INIT_UNIFORM:
    SW_ASSERT(r != NULL);
    fill_uniform(r, w, n, 1.0 / sqrt(in));
    break;
  default:
    SW_ASSERT(!"unknown initializer kind");
  }
}
