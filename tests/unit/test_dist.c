/* Unit tests of the ranks' start-up without a launcher (src/train/dist.c): a process not
 * started by mpirun is a world of one whose collectives leave data as it is, and has no
 * point-to-point messages; MPI itself is exercised by tests/integration/test_dist.py. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "slipway/train.h"
#include "train/train_int.h"

static void test_world_of_one(void **state) {
  (void)state;
  unsetenv("OMPI_COMM_WORLD_SIZE");
  unsetenv("PMI_SIZE");
  unsetenv("PMIX_RANK");
  int rank = -1, size = -1;
  assert_int_equal(sw_dist_init(NULL, NULL, &rank, &size), SW_STATUS_OK);
  assert_int_equal(rank, 0);
  assert_int_equal(size, 1);
  const sw__comm *c = sw__comm_world();
  assert_int_equal(c->rank, 0);
  assert_int_equal(c->size, 1);
  assert_string_equal(c->ops->name, "local");
  assert_false(sw__p2p_available());

  float v[3] = {1.5f, -2.0f, 3.25f};
  assert_int_equal(c->ops->allreduce_sum(c->ctx, v, 3), SW_STATUS_OK);
  assert_true(v[0] == 1.5f && v[1] == -2.0f && v[2] == 3.25f); /* the sum over one rank */
  assert_int_equal(c->ops->broadcast(c->ctx, v, sizeof v, 0), SW_STATUS_OK);
  assert_true(v[2] == 3.25f);
  char mine[8] = "abcdefg", all[8] = {0};
  assert_int_equal(c->ops->gather(c->ctx, mine, all, sizeof mine, 0), SW_STATUS_OK);
  assert_string_equal(all, "abcdefg");
  sw_dist_finish(false); /* a no-op outside MPI */
  sw_dist_finish(true);
}

static void test_no_point_to_point(void **state) {
  (void)state;
  char buf[16] = {0};
  assert_int_not_equal(sw__send(1, SW__TAG_GRAD, buf, sizeof buf), SW_STATUS_OK);
  assert_int_not_equal(sw__recv(-1, SW__TAG_GRAD, buf, sizeof buf, NULL, NULL), SW_STATUS_OK);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_world_of_one),
      cmocka_unit_test(test_no_point_to_point),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
