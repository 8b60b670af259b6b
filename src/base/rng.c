/* Philox-4x32-10: a counter-based RNG (Salmon, Moraes, Dror, Shaw, SC'11). The state is
 * (seed, stream, counter); output word j is lane j%4 of block philox((j/4, stream), seed),
 * so any position can be reached or restored without replaying the sequence. */
#include <math.h>

#include "slipway/base.h"

#define PHILOX_M0 0xD2511F53u
#define PHILOX_M1 0xCD9E8D57u
#define PHILOX_W0 0x9E3779B9u
#define PHILOX_W1 0xBB67AE85u

static inline uint32_t mulhilo(uint32_t a, uint32_t b, uint32_t *hi) {
  uint64_t p = (uint64_t)a * b;
  *hi = (uint32_t)(p >> 32);
  return (uint32_t)p;
}

void sw_philox4x32(const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]) {
  uint32_t c0 = ctr[0], c1 = ctr[1], c2 = ctr[2], c3 = ctr[3];
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < 10; round++) {
    uint32_t hi0, hi1;
    uint32_t lo0 = mulhilo(PHILOX_M0, c0, &hi0);
    uint32_t lo1 = mulhilo(PHILOX_M1, c2, &hi1);
    uint32_t n0 = hi1 ^ c1 ^ k0;
    uint32_t n1 = lo1;
    uint32_t n2 = hi0 ^ c3 ^ k1;
    uint32_t n3 = lo0;
    c0 = n0;
    c1 = n1;
    c2 = n2;
    c3 = n3;
    k0 += PHILOX_W0;
    k1 += PHILOX_W1;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

void sw_rng_init(sw_rng *r, uint64_t seed, uint64_t stream) {
  r->seed = seed;
  r->stream = stream;
  r->counter = 0;
}

uint32_t sw_rng_u32(sw_rng *r) {
  uint64_t block = r->counter >> 2;
  uint32_t ctr[4] = {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)r->stream,
                     (uint32_t)(r->stream >> 32)};
  uint32_t key[2] = {(uint32_t)r->seed, (uint32_t)(r->seed >> 32)};
  uint32_t out[4];
  sw_philox4x32(ctr, key, out);
  uint32_t v = out[r->counter & 3];
  r->counter++;
  return v;
}

uint64_t sw_rng_u64(sw_rng *r) {
  uint64_t hi = sw_rng_u32(r);
  return (hi << 32) | sw_rng_u32(r);
}

uint64_t sw_rng_below(sw_rng *r, uint64_t n) {
  SW_ASSERT(n > 0);
  if (n <= UINT32_MAX) {
    uint64_t m = (uint64_t)sw_rng_u32(r) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
      uint32_t t = (uint32_t)(-(uint32_t)n % (uint32_t)n);
      while (l < t) {
        m = (uint64_t)sw_rng_u32(r) * n;
        l = (uint32_t)m;
      }
    }
    return m >> 32;
  }
  uint64_t limit = UINT64_MAX - UINT64_MAX % n;
  uint64_t v;
  do v = sw_rng_u64(r);
  while (v >= limit);
  return v % n;
}

double sw_rng_uniform(sw_rng *r) { return (double)(sw_rng_u64(r) >> 11) * 0x1.0p-53; }

double sw_rng_normal(sw_rng *r) {
  double u1 = sw_rng_uniform(r), u2 = sw_rng_uniform(r);
  return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}

void sw_rng_permutation(sw_rng *r, uint64_t *perm, size_t n) {
  for (size_t i = 0; i < n; i++) perm[i] = i;
  for (size_t i = n; i > 1; i--) {
    size_t j = (size_t)sw_rng_below(r, i);
    uint64_t t = perm[i - 1];
    perm[i - 1] = perm[j];
    perm[j] = t;
  }
}
