/* libFuzzer target of the CSV reader (src/data/csv.c); built with SW_FUZZ=ON and, as
 * replay_fuzz_csv, replayed over tests/fuzz/corpus/csv/ on every test run. Reads each
 * input to the end, comma- and tab-separated, with and without a known field count,
 * going on after FORMAT errors, and touches every byte the reader hands out. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "slipway/data.h"

#define CHECK(cond)                 \
  do {                              \
    if (!(cond)) __builtin_trap();  \
  } while (0)

static volatile uint8_t sink;

static void read_all(const char *text, size_t size, char delim, size_t expect_fields) {
  sw_csv_reader *r = NULL;
  CHECK(sw_csv_open_mem(text, size, delim, &r) == SW_STATUS_OK);
  sw_csv_expect_fields(r, expect_fields);
  uint64_t last_offset = 0, last_line = 0;
  size_t calls = 0;
  for (;;) {
    sw_csv_record rec;
    sw_status st = sw_csv_next(r, &rec);
    if (st == SW_STATUS_EOF) break;
    CHECK(st == SW_STATUS_OK || st == SW_STATUS_FORMAT);
    /* progress: each record starts past the last one, and never more calls than bytes */
    CHECK(++calls <= size);
    CHECK(calls == 1 || (rec.offset > last_offset && rec.line > last_line));
    last_offset = rec.offset;
    last_line = rec.line;
    CHECK(rec.line >= 1);
    CHECK(rec.offset < size);
    CHECK(rec.raw == text + rec.offset);
    CHECK(rec.raw_len <= size - rec.offset);
    uint8_t acc = 0;
    for (size_t i = 0; i < rec.raw_len; i++) acc ^= (uint8_t)rec.raw[i];
    if (st == SW_STATUS_OK) {
      CHECK(rec.n_fields >= 1);
      /* a record of another width is only possible within one line */
      CHECK(expect_fields == 0 || rec.n_fields == expect_fields ||
            !memchr(rec.raw, '\n', rec.raw_len));
      for (size_t f = 0; f < rec.n_fields; f++) {
        /* an unquoted field is never longer than its record */
        CHECK(rec.field_lens[f] <= rec.raw_len);
        for (size_t i = 0; i < rec.field_lens[f]; i++) acc ^= (uint8_t)rec.fields[f][i];
        CHECK(rec.fields[f][rec.field_lens[f]] == '\0');
      }
    }
    sink = acc;
  }
  sw_csv_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = sw_alloc_live();
  /* comma files, the same with the width known (as prep knows it from the header), and
   * the same bytes as tab-separated */
  read_all((const char *)data, size, ',', 0);
  read_all((const char *)data, size, ',', 3);
  read_all((const char *)data, size, '\t', 0);
  CHECK(sw_alloc_live() == live);
  return 0;
}
