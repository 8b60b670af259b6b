/* libFuzzer target of the safetensors reader (src/nn/safetensors.c); built with SW_FUZZ=ON
 * and, as replay_fuzz_safetensors, replayed over tests/fuzz/corpus/safetensors/ on every
 * test run. Whatever the reader accepts must keep its promises: tensors sorted by name
 * and found by name, data aligned, inside the copy and exactly its shape's size, tiling
 * the data section; and what it accepts, the writer writes back and the reader reads
 * again to the same tensors. Nothing leaks, accepted or not. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "slipway/nn.h"

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

static uint64_t bytes_of(const sw_named_tensor *t) {
  uint64_t n = sw_dtype_size(t->dtype);
  for (int d = 0; d < t->rank; d++) n *= (uint64_t)t->shape[d];
  return n;
}

static void same_tensors(const sw_safetensors *a, const sw_safetensors *b) {
  CHECK(sw_safetensors_count(a) == sw_safetensors_count(b));
  for (size_t i = 0; i < sw_safetensors_count(a); i++) {
    const sw_named_tensor *x = sw_safetensors_get(a, i), *y = sw_safetensors_get(b, i);
    CHECK(strcmp(x->name, y->name) == 0);
    CHECK(x->dtype == y->dtype && x->rank == y->rank);
    CHECK(memcmp(x->shape, y->shape, (size_t)x->rank * sizeof *x->shape) == 0);
    CHECK(memcmp(x->data, y->data, bytes_of(x)) == 0);
  }
  const json_t *ma = sw_safetensors_metadata(a), *mb = sw_safetensors_metadata(b);
  if (ma && json_object_size(ma) > 0)
    CHECK(mb && json_equal((json_t *)ma, (json_t *)mb));
  else
    CHECK(mb == NULL);
}

/* Writes what was read to a temporary file and reads it back (in /dev/shm where there
 * is one: the writer fsyncs, which on a disk would slow the fuzzer down a hundredfold). */
static void round_trip(const sw_safetensors *st) {
  static char path[64];
  if (!path[0])
    snprintf(path, sizeof path, "%s/fuzz_safetensors.%d.safetensors",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp", (int)getpid());
  size_t n = sw_safetensors_count(st);
  sw_named_tensor *t = malloc((n ? n : 1) * sizeof *t);
  CHECK(t != NULL);
  for (size_t i = 0; i < n; i++) t[i] = *sw_safetensors_get(st, i);
  sw_status rc = sw_safetensors_write(path, t, n, sw_safetensors_metadata(st));
  free(t);
  CHECK(rc == SW_STATUS_OK || rc == SW_STATUS_IO || rc == SW_STATUS_NOMEM);
  if (rc != SW_STATUS_OK) return;
  sw_safetensors *again = NULL;
  CHECK(sw_safetensors_open(path, &again) == SW_STATUS_OK);
  same_tensors(st, again);
  sw_safetensors_close(again);
  unlink(path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = sw_alloc_live();
  sw_safetensors *st = NULL;
  sw_status rc = sw_safetensors_parse(data, size, &st);
  if (rc != SW_STATUS_OK) {
    CHECK(st == NULL);
    CHECK(rc == SW_STATUS_FORMAT || rc == SW_STATUS_TRUNCATED || rc == SW_STATUS_UNSUPPORTED);
    CHECK(sw_last_error()[0] != '\0');
    CHECK(sw_alloc_live() == live);
    return 0;
  }
  CHECK(size >= 8);
  uint64_t header_len = 0;
  for (int i = 0; i < 8; i++) header_len |= (uint64_t)data[i] << (8 * i);
  CHECK(header_len <= size - 8);
  uint64_t data_len = size - 8 - header_len, total = 0;
  size_t n = sw_safetensors_count(st);
  for (size_t i = 0; i < n; i++) {
    const sw_named_tensor *t = sw_safetensors_get(st, i);
    CHECK(t != NULL && t->name != NULL);
    CHECK(strcmp(t->name, "__metadata__") != 0);
    if (i > 0) CHECK(strcmp(sw_safetensors_get(st, i - 1)->name, t->name) < 0);
    CHECK(sw_safetensors_find(st, t->name) == t);
    CHECK(t->rank >= 0 && t->rank <= SW_NN_MAX_RANK);
    for (int d = 0; d < t->rank; d++) CHECK(t->shape[d] >= 0);
    uint64_t bytes = bytes_of(t);
    CHECK(bytes <= data_len);
    total += bytes;
    if (bytes > 0) {
      CHECK((uintptr_t)t->data % sw_dtype_size(t->dtype) == 0);
      /* every byte is readable (ASan would say otherwise) */
      volatile uint8_t sum = 0;
      for (uint64_t k = 0; k < bytes; k++) sum ^= ((const uint8_t *)t->data)[k];
      (void)sum;
    }
  }
  CHECK(total == data_len); /* the tensors tile the data section */
  CHECK(sw_safetensors_get(st, n) == NULL);
  const json_t *meta = sw_safetensors_metadata(st);
  if (meta) {
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)meta, k, v) CHECK(json_is_string(v));
  }
  if (size < (1u << 16)) round_trip(st);
  sw_safetensors_close(st);
  CHECK(sw_alloc_live() == live);
  return 0;
}
