/* libFuzzer target of the ONNX importer (src/nn/onnx_import.c); built with SW_FUZZ=ON
 * and, as replay_fuzz_onnx, replayed over tests/fuzz/corpus/onnx/ (made by
 * make_onnx_corpus.py) on every test run. A refused file fails cleanly: a status and a
 * message, no graph, nothing leaked. An accepted one is a graph whose outputs are its
 * nodes; a small one is allocated and run once on zero inputs. */
#include <stdint.h>
#include <string.h>

#include "slipway/nn.h"

#define CHECK(cond)                \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  long live = sw_alloc_live();
  sw_graph *g = NULL;
  sw_node *outs = NULL;
  size_t n_outs = 0;
  json_t *meta = NULL;
  sw_status st = sw_onnx_import_mem(data, size, "fuzz.onnx", &g, &outs, &n_outs, &meta);
  if (st != SW_STATUS_OK) {
    CHECK(g == NULL && outs == NULL && n_outs == 0 && meta == NULL);
    CHECK(st == SW_STATUS_FORMAT || st == SW_STATUS_UNSUPPORTED || st == SW_STATUS_INVALID || st == SW_STATUS_RANGE ||
          st == SW_STATUS_NOMEM);
    CHECK(sw_last_error()[0] != '\0');
    CHECK(sw_alloc_live() == live);
    return 0;
  }
  CHECK(g != NULL && outs != NULL && n_outs >= 1);
  size_t nodes = sw_graph_size(g);
  int64_t total = 0;
  for (size_t i = 0; i < n_outs; i++) CHECK(outs[i] >= 0 && (size_t)outs[i] < nodes);
  for (size_t i = 0; i < nodes; i++) {
    CHECK(sw_graph_rank(g, (sw_node)i) >= 0 && sw_graph_rank(g, (sw_node)i) <= SW_NN_MAX_RANK);
    total += sw_graph_elements(g, (sw_node)i);
  }
  if (nodes < 256 && total < (1 << 20) && sw_graph_alloc(g, 2) == SW_STATUS_OK && sw_graph_set_batch(g, 2) == SW_STATUS_OK) {
    sw_graph_set_training(g, false);
    sw_graph_set_threads(g, 1);
    for (size_t i = 0; i < nodes; i++)
      if (sw_graph_op_type(g, (sw_node)i) == SW_OP_INPUT)
        memset(sw_graph_data(g, (sw_node)i), 0, (size_t)sw_graph_elements(g, (sw_node)i) * sw_dtype_size(sw_graph_dtype(g, (sw_node)i)));
    (void)sw_graph_forward(g);
  }
  json_decref(meta);
  sw_free(outs);
  sw_graph_free(g);
  CHECK(sw_alloc_live() == live);
  return 0;
}
