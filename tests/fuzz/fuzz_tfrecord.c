/* libFuzzer target of the TFRecord reader (src/data/tfrecord.c); built with SW_FUZZ=ON
 * and, as replay_fuzz_tfrecord, replayed over tests/fuzz/corpus/tfrecord/ on every test
 * run. Every record that passes both CRCs goes on through the Example decoder; after a
 * data CRC mismatch the reader skips the frame and goes on, as prep does. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/data.h"

#define CHECK(cond)                 \
  do {                              \
    if (!(cond)) __builtin_trap();  \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = sw_alloc_live();
  sw_tfrecord_reader *r = NULL;
  if (sw_tfrecord_open_mem(data, size, "fuzz.tfrecord", &r) != SW_STATUS_OK) return 0;
  uint64_t expect_offset = 0;
  for (;;) {
    const uint8_t *rec = NULL;
    size_t len = 0;
    uint64_t offset = UINT64_MAX;
    sw_status st = sw_tfrecord_next(r, &rec, &len, &offset);
    CHECK(offset == expect_offset);
    if (st != SW_STATUS_OK) {
      CHECK(st == SW_STATUS_EOF || st == SW_STATUS_TRUNCATED || st == SW_STATUS_CORRUPT);
      CHECK(st != SW_STATUS_EOF || offset == size);
      CHECK(rec == NULL && len == 0);
      if (st != SW_STATUS_CORRUPT || sw_tfrecord_skip(r) != SW_STATUS_OK) break;
      /* skipped: the frame's declared length was intact, and it fits in the input */
      uint64_t declared;
      memcpy(&declared, data + offset, 8);
      CHECK(declared <= size - offset - SW_TFRECORD_OVERHEAD);
      expect_offset = offset + declared + SW_TFRECORD_OVERHEAD;
      continue;
    }
    /* the record lies inside the input, right after its 12-byte header */
    CHECK(rec == data + offset + 12);
    CHECK(len <= size - offset - SW_TFRECORD_OVERHEAD);
    /* random access agrees with the cursor */
    const uint8_t *again = NULL;
    size_t again_len = 0;
    CHECK(sw_tfrecord_read_at(r, offset, &again, &again_len) == SW_STATUS_OK);
    CHECK(again == rec && again_len == len);
    expect_offset = offset + len + SW_TFRECORD_OVERHEAD;

    sw_example ex;
    if (sw_example_decode(rec, len, &ex) == SW_STATUS_OK) {
      for (size_t i = 0; i < ex.n_features; i++) CHECK(ex.features[i].name != NULL);
    } else {
      CHECK(ex.n_features == 0 && ex.features == NULL);
    }
    sw_example_clear(&ex);
  }
  sw_tfrecord_close(r);
  CHECK(sw_alloc_live() == live);
  return 0;
}
