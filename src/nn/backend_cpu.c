/* The CPU backend: the table of kernels (defined in the cpu_*.c files) and the
 * library-wide settings of OpenBLAS. Always built. */
#include <cblas.h>
#include <stdlib.h>
#include <string.h>

#include "nn/nn_int.h"

bool sw__avx512_unless(const char *var, const char *off1, const char *off2) {
#if defined(__x86_64__) && defined(__GNUC__)
  const char *e = getenv(var);
  bool off = e && ((off1 && strcmp(e, off1) == 0) || (off2 && strcmp(e, off2) == 0));
  return __builtin_cpu_supports("avx512f") && !off;
#else
  (void)var, (void)off1, (void)off2;
  return false;
#endif
}

/* OpenBLAS always runs on the calling thread: the engine splits its work over its own
 * pool (sw__gemm, the kernels' loops), and two sets of spinning threads on the same
 * cores slow each other down. */
static void cpu_set_threads(int threads) {
  (void)threads;
  openblas_set_num_threads(1);
}

const sw__backend sw__cpu_backend = {
    .name = "cpu",
    .forward = {
#define SW__FWD(name, onnx, n) [SW_OP_##name] = sw__cpu_fwd_##name,
        SW_OP_MAP(SW__FWD)
#undef SW__FWD
    },
    .backward = {
#define SW__BWD(name, onnx, n) [SW_OP_##name] = sw__cpu_bwd_##name,
        SW_OP_MAP(SW__BWD)
#undef SW__BWD
    },
    .set_threads = cpu_set_threads,
};
