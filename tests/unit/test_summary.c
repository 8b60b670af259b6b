/* Unit tests of the TensorBoard writer (src/train/summary.c): scalars written to a
 * fresh directory are read back through the TFRecord reader (both CRCs checked) and
 * decoded with protobuf-c; the file name, the version record, and the errors. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "event.pb-c.h"
#include "slipway/data.h"
#include "slipway/train.h"

static char *make_tmpdir(void) {
  char tmpl[] = "/tmp/sw_test_summary.XXXXXX";
  assert_non_null(mkdtemp(tmpl));
  char *d = sw_strdup(tmpl);
  assert_non_null(d);
  return d;
}

static double wall_clock(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct {
  int64_t step;
  const char *tag;
  float value;
} scalar;

/* Reads every record of path and decodes it as an Event; the caller frees each with
 * tensorboard__event__free_unpacked and the array with free. */
static Tensorboard__Event **read_events(const char *path, size_t *count) {
  sw_tfrecord_reader *r = NULL;
  assert_int_equal(sw_tfrecord_open(path, &r), SW_STATUS_OK);
  Tensorboard__Event **events = NULL;
  size_t n = 0;
  for (;;) {
    const uint8_t *data;
    size_t len;
    uint64_t offset;
    sw_status st = sw_tfrecord_next(r, &data, &len, &offset);
    if (st == SW_STATUS_EOF) break;
    if (st != SW_STATUS_OK) fail_msg("%s: %s", path, sw_last_error());
    Tensorboard__Event *ev = tensorboard__event__unpack(NULL, len, data);
    if (!ev) fail_msg("%s: record at offset %llu is not an Event", path, (unsigned long long)offset);
    events = realloc(events, (n + 1) * sizeof *events);
    assert_non_null(events);
    events[n++] = ev;
  }
  sw_tfrecord_close(r);
  *count = n;
  return events;
}

static void free_events(Tensorboard__Event **events, size_t n) {
  for (size_t i = 0; i < n; i++) tensorboard__event__free_unpacked(events[i], NULL);
  free(events);
}

/* The version record, then one Event per scalar in the order written. */
static void check_events(const char *path, const scalar *want, size_t n_want, double t0, double t1) {
  size_t n = 0;
  Tensorboard__Event **ev = read_events(path, &n);
  assert_int_equal(n, n_want + 1);

  assert_int_equal(ev[0]->what_case, TENSORBOARD__EVENT__WHAT_FILE_VERSION);
  assert_string_equal(ev[0]->file_version, "brain.Event:2");
  assert_true(ev[0]->wall_time >= t0 - 1.0 && ev[0]->wall_time <= t1 + 1.0);

  double last_time = ev[0]->wall_time;
  for (size_t i = 0; i < n_want; i++) {
    const Tensorboard__Event *e = ev[i + 1];
    assert_int_equal(e->what_case, TENSORBOARD__EVENT__WHAT_SUMMARY);
    assert_int_equal(e->step, want[i].step);
    /* real seconds since 1970 with a fraction, never going back */
    assert_true(e->wall_time >= last_time && e->wall_time <= t1 + 1.0);
    last_time = e->wall_time;
    assert_non_null(e->summary);
    assert_int_equal(e->summary->n_value, 1);
    const Tensorboard__SummaryValue *v = e->summary->value[0];
    assert_string_equal(v->tag, want[i].tag);
    assert_int_equal(v->value_case, TENSORBOARD__SUMMARY_VALUE__VALUE_SIMPLE_VALUE);
    assert_memory_equal(&v->simple_value, &want[i].value, sizeof(float)); /* bit for bit */
  }
  free_events(ev, n);
}

static void test_scalars_round_trip(void **state) {
  (void)state;
  char *tmp = make_tmpdir();
  char *dir = sw_path_join(tmp, "runs/exp1/tb"); /* missing: created */
  assert_non_null(dir);
  const scalar want[] = {
      {0, "loss/train", 2.302585f}, {0, "accuracy/train", 0.125f},
      {100, "loss/train", 0.6931472f}, {100, "lr", 1e-3f},
      {-1, "negative step", -0.0f}, {INT64_MAX, "big step", 3.4028235e38f},
      {7, "nan", NAN}, {8, "inf", -INFINITY},
  };
  size_t n_want = sizeof want / sizeof want[0];

  double t0 = wall_clock();
  sw_summary_writer *w = NULL;
  assert_int_equal(sw_summary_open(dir, &w), SW_STATUS_OK);
  assert_non_null(w);
  for (size_t i = 0; i < n_want; i++)
    assert_int_equal(sw_summary_scalar(w, want[i].step, want[i].tag, want[i].value), SW_STATUS_OK);
  assert_int_equal(sw_summary_flush(w), SW_STATUS_OK);
  double t1 = wall_clock();

  /* events.out.tfevents.SECONDS.HOST in dir */
  const char *path = sw_summary_path(w);
  char *prefix = sw_asprintf("%s/events.out.tfevents.", dir);
  assert_non_null(prefix);
  assert_memory_equal(path, prefix, strlen(prefix));
  char *end = NULL;
  long long secs = strtoll(path + strlen(prefix), &end, 10);
  assert_true(secs >= (long long)t0 - 1 && secs <= (long long)t1 + 1);
  char host[256] = "";
  gethostname(host, sizeof host);
  host[sizeof host - 1] = '\0';
  assert_int_equal(*end, '.');
  assert_string_equal(end + 1, host[0] ? host : "localhost");

  /* readable after a flush, while the writer is still open */
  check_events(path, want, n_want, t0, t1);
  char *path_copy = sw_strdup(path);
  assert_non_null(path_copy);
  sw_summary_close(w);
  check_events(path_copy, want, n_want, t0, t1);

  sw_free(path_copy);
  sw_free(prefix);
  sw_free(dir);
  assert_int_equal(sw_remove_tree(tmp), SW_STATUS_OK);
  sw_free(tmp);
}

/* Close flushes: what was written before it is all there, with no explicit flush. */
static void test_close_flushes(void **state) {
  (void)state;
  char *tmp = make_tmpdir();
  sw_summary_writer *w = NULL;
  assert_int_equal(sw_summary_open(tmp, &w), SW_STATUS_OK);
  char *path = sw_strdup(sw_summary_path(w));
  assert_non_null(path);
  scalar want[50];
  char tags[50][16];
  for (int i = 0; i < 50; i++) {
    snprintf(tags[i], sizeof tags[i], "t%d", i % 3);
    want[i] = (scalar){i * 10, tags[i], (float)i * 0.5f};
    assert_int_equal(sw_summary_scalar(w, want[i].step, want[i].tag, want[i].value), SW_STATUS_OK);
  }
  sw_summary_close(w);
  check_events(path, want, 50, 0.0, wall_clock());
  sw_free(path);
  assert_int_equal(sw_remove_tree(tmp), SW_STATUS_OK);
  sw_free(tmp);
}

/* Two writers in one directory within one second get two files, neither overwritten. */
static void test_two_writers_two_files(void **state) {
  (void)state;
  char *tmp = make_tmpdir();
  sw_summary_writer *a = NULL, *b = NULL;
  assert_int_equal(sw_summary_open(tmp, &a), SW_STATUS_OK);
  assert_int_equal(sw_summary_open(tmp, &b), SW_STATUS_OK);
  assert_string_not_equal(sw_summary_path(a), sw_summary_path(b));
  assert_non_null(strstr(sw_summary_path(b), "tfevents"));
  char *pa = sw_strdup(sw_summary_path(a)), *pb = sw_strdup(sw_summary_path(b));
  assert_int_equal(sw_summary_scalar(a, 1, "a", 1.0f), SW_STATUS_OK);
  assert_int_equal(sw_summary_scalar(b, 2, "b", 2.0f), SW_STATUS_OK);
  sw_summary_close(a);
  sw_summary_close(b);
  const scalar wa[] = {{1, "a", 1.0f}}, wb[] = {{2, "b", 2.0f}};
  check_events(pa, wa, 1, 0.0, wall_clock());
  check_events(pb, wb, 1, 0.0, wall_clock());
  sw_free(pa);
  sw_free(pb);
  assert_int_equal(sw_remove_tree(tmp), SW_STATUS_OK);
  sw_free(tmp);
}

static void test_errors(void **state) {
  (void)state;
  sw_summary_close(NULL); /* no-op */
  char *tmp = make_tmpdir();

  /* the directory's place is taken by a file: IO or EXISTS, naming it */
  char *file = sw_path_join(tmp, "plain");
  assert_non_null(file);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  sw_summary_writer *w = (sw_summary_writer *)&w; /* must be reset to NULL */
  assert_int_not_equal(sw_summary_open(file, &w), SW_STATUS_OK);
  assert_null(w);
  assert_non_null(strstr(sw_last_error(), "plain"));

  /* a directory we may not write into (skipped as root, who may) */
  char *ro = sw_path_join(tmp, "readonly");
  assert_non_null(ro);
  assert_int_equal(mkdir(ro, 0555), 0);
  if (geteuid() != 0) {
    assert_int_equal(sw_summary_open(ro, &w), SW_STATUS_IO);
    assert_null(w);
    assert_non_null(strstr(sw_last_error(), "readonly/events.out.tfevents."));
  }
  chmod(ro, 0755);

  /* a directory that can be made but whose event file's path is too long (fails as
   * root too): IO */
  sw_buf deep = {0};
  assert_int_equal(sw_buf_printf(&deep, "%s", tmp), SW_STATUS_OK);
  while (deep.len < 3800) assert_int_equal(sw_buf_printf(&deep, "/%0200d", 0), SW_STATUS_OK);
  assert_int_equal(sw_buf_printf(&deep, "/%0*d", (int)(4080 - deep.len - 1), 0), SW_STATUS_OK);
  assert_int_equal(sw_buf_append(&deep, "", 1), SW_STATUS_OK);
  assert_int_equal(sw_summary_open((const char *)deep.data, &w), SW_STATUS_IO);
  assert_null(w);
  assert_true(sw_path_is_dir((const char *)deep.data));
  /* (the message holds 2047 bytes: the path's end, and the reason, are cut off) */
  assert_memory_equal(sw_last_error(), "summary: create ", 16);
  sw_buf_free(&deep);

  assert_int_equal(sw_summary_open("", &w), SW_STATUS_INVALID);
  assert_int_equal(sw_summary_open(NULL, &w), SW_STATUS_INVALID);

  assert_int_equal(sw_summary_open(tmp, &w), SW_STATUS_OK);
  assert_int_equal(sw_summary_scalar(w, 0, NULL, 1.0f), SW_STATUS_INVALID);
  assert_int_equal(sw_summary_scalar(w, 0, "", 1.0f), SW_STATUS_INVALID);
  assert_non_null(strstr(sw_last_error(), sw_summary_path(w)));
  char *path = sw_strdup(sw_summary_path(w));
  sw_summary_close(w);
  check_events(path, NULL, 0, 0.0, wall_clock()); /* the rejected scalars left no trace */

  sw_free(path);
  sw_free(ro);
  sw_free(file);
  assert_int_equal(sw_remove_tree(tmp), SW_STATUS_OK);
  sw_free(tmp);
}

/* Entries of dir other than . and ..; 0 when dir is missing. */
static int count_entries(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) n++;
  closedir(d);
  return n;
}

/* Every allocation of open failing in turn: an error, no writer, no leak, and no
 * half-made event file left behind. */
static void test_open_out_of_memory(void **state) {
  (void)state;
  char *tmp = make_tmpdir();
  char *dir = sw_path_join(tmp, "tb");
  assert_non_null(dir);
  bool opened = false;
  for (long n = 1; n < 100 && !opened; n++) {
    long live = sw_alloc_live();
    sw_summary_writer *w = NULL;
    sw_alloc_fail_after(n);
    sw_status st = sw_summary_open(dir, &w);
    if (st == SW_STATUS_OK) st = sw_summary_scalar(w, 1, "x", 1.0f);
    sw_alloc_fail_after(0);
    if (w && st == SW_STATUS_OK) {
      opened = true;
    } else if (w) {
      assert_int_equal(st, SW_STATUS_NOMEM);
    } else {
      assert_int_equal(st, SW_STATUS_NOMEM);
      assert_int_equal(sw_alloc_live(), live);
      assert_int_equal(count_entries(dir), 0);
    }
    sw_summary_close(w);
    assert_int_equal(sw_alloc_live(), live);
    if (!opened) assert_int_equal(sw_remove_tree(dir), SW_STATUS_OK);
  }
  assert_true(opened);
  sw_free(dir);
  assert_int_equal(sw_remove_tree(tmp), SW_STATUS_OK);
  sw_free(tmp);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_scalars_round_trip),
      cmocka_unit_test(test_close_flushes),
      cmocka_unit_test(test_two_writers_two_files),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_open_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
