/* libFuzzer target of the WAV decoder (src/data/wav.c); built with SW_FUZZ=ON and, as
 * replay_fuzz_wav, replayed over tests/fuzz/corpus/wav/ on every test run. Decoded
 * clips of a plausible rate and length go on through the MFCC front end as well. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "data/data_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  float *samples = NULL;
  size_t n = 0;
  int rate = 0;
  if (sw__wav_decode(data, size, &samples, &n, &rate) != SW_STATUS_OK) {
    SW_ASSERT(samples == NULL && n == 0);
    return 0;
  }
  SW_ASSERT(rate > 0);
  for (size_t i = 0; i < n; i++) SW_ASSERT(samples[i] >= -1.0f && samples[i] < 1.0f);

  /* Small plans only, so each input stays fast. */
  if (rate >= 1000 && rate <= 48000 && n <= 48000) {
    sw__mfcc_options opt = {8, 13, 26, 25.0, 10.0, 20.0};
    sw__mfcc *m = NULL;
    if (sw__mfcc_new(&opt, rate, &m) == SW_STATUS_OK) {
      float out[8 * 13];
      if (sw__mfcc_compute(m, samples, n, out) == SW_STATUS_OK)
        for (size_t i = 0; i < 8 * 13; i++) SW_ASSERT(isfinite(out[i]));
      sw__mfcc_free(m);
    }
  }
  sw_free(samples);
  return 0;
}
