/* The TensorBoard event writer of the trainer: scalars as tensorboard Event protos
 * (protobuf-c, from src/train/proto/event.proto) in TFRecord frames (data's framing),
 * appended to one events.out.tfevents.* file per run with stdio.
 *
 * The file, as TensorBoard reads it:
 *   record 0   Event{wall_time, file_version = "brain.Event:2"}
 *   record i   Event{wall_time, step, summary = Summary{value = [{tag, simple_value}]}}
 * each record framed as data.h draws it (u64 length, masked CRC32C of the length,
 * the Event, masked CRC32C of the Event). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "event.pb-c.h"
#include "slipway/data.h"
#include "slipway/train.h"

#define SW__EVENT_FILE_VERSION "brain.Event:2"
/* Writers started in the same second in the same directory get ".1", ".2", ... after
 * the host name; the name still holds "tfevents", which is what TensorBoard looks for. */
#define SW__EVENT_NAME_TRIES 100

struct sw_summary_writer {
  FILE *f;
  char *path;
  sw_buf event;  /* one serialized Event, reused */
  sw_buf record; /* its TFRecord frame, reused */
  bool failed;   /* a write failed: the file may end inside a frame, so nothing more goes in */
};

static double wall_time_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Creates the event file under a name no other writer holds (O_EXCL). */
static sw_status create_event_file(const char *dir, sw_summary_writer *w) {
  char host[256];
  if (gethostname(host, sizeof host) != 0 || host[0] == '\0') strcpy(host, "localhost");
  host[sizeof host - 1] = '\0';
  long long secs = (long long)time(NULL);
  sw_status st = SW_STATUS_OK;
  for (int attempt = 0; attempt < SW__EVENT_NAME_TRIES; attempt++) {
    char *name = attempt == 0 ? sw_asprintf("events.out.tfevents.%lld.%s", secs, host)
                              : sw_asprintf("events.out.tfevents.%lld.%s.%d", secs, host, attempt);
    char *path = name ? sw_path_join(dir, name) : NULL;
    sw_free(name);
    if (!path) return sw_error(SW_STATUS_NOMEM, "summary: out of memory");
    FILE *f = fopen(path, "wbx");
    if (f) {
      w->f = f;
      w->path = path;
      return SW_STATUS_OK;
    }
    int err = errno;
    if (err != EEXIST) {
      st = sw_error(SW_STATUS_IO, "summary: create %s: %s", path, strerror(err));
      sw_free(path);
      return st;
    }
    sw_free(path);
  }
  return sw_error(SW_STATUS_EXISTS, "summary: %d event files named events.out.tfevents.%lld.%s* already in %s",
                  SW__EVENT_NAME_TRIES, secs, host, dir);
}

/* Serializes ev, frames it and appends the frame to the file. */
static sw_status write_event(sw_summary_writer *w, const Tensorboard__Event *ev) {
  if (w->failed)
    return sw_error(SW_STATUS_IO, "summary: %s: an earlier write failed; the file is closed to more events",
                    w->path);
  w->event.len = 0;
  w->record.len = 0;
  size_t size = tensorboard__event__get_packed_size(ev);
  sw_status st = sw_buf_reserve(&w->event, size + 1);
  if (st) return sw_error(SW_STATUS_NOMEM, "summary: %s: out of memory for an event of %zu bytes", w->path, size);
  size_t packed = tensorboard__event__pack(ev, w->event.data);
  SW_ASSERT(packed == size);
  w->event.len = packed;
  st = sw_tfrecord_frame(&w->record, w->event.data, w->event.len);
  if (st) return sw_error(SW_STATUS_NOMEM, "summary: %s: out of memory framing an event", w->path);
  if (fwrite(w->record.data, 1, w->record.len, w->f) != w->record.len) {
    int err = errno;
    w->failed = true;
    return sw_error(SW_STATUS_IO, "summary: write %s: %s", w->path, strerror(err));
  }
  return SW_STATUS_OK;
}

sw_status sw_summary_open(const char *dir, sw_summary_writer **out) {
  sw_status st = SW_STATUS_OK;
  sw_summary_writer *w = NULL;
  if (!out) return sw_error(SW_STATUS_INVALID, "summary: no place for the writer");
  *out = NULL;
  if (!dir || !dir[0]) return sw_error(SW_STATUS_INVALID, "summary: no directory given");

  st = sw_mkdir_p(dir);
  if (st) {
    st = sw_error_prefix(st, "summary: directory %s: ", dir);
    goto fail;
  }
  w = sw_calloc(1, sizeof *w);
  if (!w) {
    st = sw_error(SW_STATUS_NOMEM, "summary: out of memory");
    goto fail;
  }
  st = create_event_file(dir, w);
  if (st) goto fail;

  Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
  ev.wall_time = wall_time_now();
  ev.what_case = TENSORBOARD__EVENT__WHAT_FILE_VERSION;
  ev.file_version = (char *)SW__EVENT_FILE_VERSION;
  st = write_event(w, &ev);
  if (st) goto fail;
  *out = w;
  return SW_STATUS_OK;

fail:
  if (w && w->f) {
    fclose(w->f);
    remove(w->path); /* holds at most a partial header record: useless to TensorBoard */
  }
  if (w) {
    sw_free(w->path);
    sw_buf_free(&w->event);
    sw_buf_free(&w->record);
    sw_free(w);
  }
  return st;
}

sw_status sw_summary_scalar(sw_summary_writer *w, int64_t step, const char *tag, float value) {
  if (!w) return sw_error(SW_STATUS_INVALID, "summary: no writer");
  if (!tag || !tag[0]) return sw_error(SW_STATUS_INVALID, "summary: %s: scalar without a tag", w->path);

  Tensorboard__SummaryValue v = TENSORBOARD__SUMMARY_VALUE__INIT;
  v.tag = (char *)tag;
  v.value_case = TENSORBOARD__SUMMARY_VALUE__VALUE_SIMPLE_VALUE;
  v.simple_value = value;
  Tensorboard__SummaryValue *values[1] = {&v};
  Tensorboard__Summary summary = TENSORBOARD__SUMMARY__INIT;
  summary.n_value = 1;
  summary.value = values;
  Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
  ev.wall_time = wall_time_now();
  ev.step = step;
  ev.what_case = TENSORBOARD__EVENT__WHAT_SUMMARY;
  ev.summary = &summary;
  return write_event(w, &ev);
}

sw_status sw_summary_flush(sw_summary_writer *w) {
  if (!w) return sw_error(SW_STATUS_INVALID, "summary: no writer");
  if (fflush(w->f) != 0) {
    int err = errno;
    w->failed = true;
    return sw_error(SW_STATUS_IO, "summary: write %s: %s", w->path, strerror(err));
  }
  if (fsync(fileno(w->f)) != 0)
    return sw_error(SW_STATUS_IO, "summary: fsync %s: %s", w->path, strerror(errno));
  return SW_STATUS_OK;
}

const char *sw_summary_path(const sw_summary_writer *w) {
  return w ? w->path : NULL;
}

void sw_summary_close(sw_summary_writer *w) {
  if (!w) return;
  if (sw_summary_flush(w) != SW_STATUS_OK) SW_WARN("%s", sw_last_error());
  if (fclose(w->f) != 0) SW_WARN("summary: close %s: %s", w->path, strerror(errno));
  sw_free(w->path);
  sw_buf_free(&w->event);
  sw_buf_free(&w->record);
  sw_free(w);
}
