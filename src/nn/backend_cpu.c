/* The CPU backend: the table of kernels (defined in the cpu_*.c files) and the
 * library-wide settings of OpenBLAS. Always built. */
#include <cblas.h>

#include "nn/nn_int.h"

static void cpu_set_threads(int threads) { openblas_set_num_threads(threads); }

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
