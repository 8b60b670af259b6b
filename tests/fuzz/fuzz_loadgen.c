/* libFuzzer target of the load generator's parsers of what a server says
 * (src/serve/loadgen.c): model metadata (v1 and v2), :predict and /infer answers, and
 * :feedback answers. The first byte picks the parser, the second the number of rows;
 * the rest is the server's text. Besides not crashing or leaking: a parsed signature
 * has sane sizes and every prediction of a classifier is a class index below k. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "slipway/loadgen.h"

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2) return 0;
  int which = data[0] % 5;
  int64_t rows = data[1] % 8 + 1;
  const char *text = (const char *)data + 2;
  size_t len = size - 2;
  long live = sw_alloc_live();
  if (which < 2) {
    sw_loadgen_signature sig;
    sw_status st = sw_loadgen_parse_metadata(text, len, which ? SW_LOADGEN_V2 : SW_LOADGEN_V1, &sig);
    if (!st) {
      CHECK(sig.n_in >= 1 && sig.n_in <= SW_LOADGEN_MAX_IO);
      for (size_t k = 0; k < sig.n_in; k++) {
        CHECK(sig.in[k].per >= 0 && sig.in[k].per <= (1 << 24));
        CHECK(sig.in[k].rank >= 0 && sig.in[k].rank <= SW_LOADGEN_MAX_RANK);
        CHECK(strlen(sig.in[k].name) < sizeof sig.in[k].name);
      }
    } else {
      CHECK(sig.n_in == 0);
    }
  } else if (which < 4) {
    double pred[8];
    int64_t k = -1;
    sw_status st = sw_loadgen_parse_answer(text, len, which == 2 ? SW_LOADGEN_V1 : SW_LOADGEN_V2, "out", rows, pred, &k);
    if (!st) {
      CHECK(k >= 1);
      for (int64_t r = 0; r < rows && k > 1; r++) CHECK(pred[r] >= 0 && pred[r] < (double)k && pred[r] == floor(pred[r]));
    } else {
      CHECK(k == 0);
    }
  } else {
    int64_t c[5];
    if (!sw_loadgen_parse_feedback_answer(text, len, c))
      for (int i = 0; i < 5; i++) CHECK(c[i] >= 0);
  }
  CHECK(sw_alloc_live() == live);
  return 0;
}
