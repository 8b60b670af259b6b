/* slipway trainer: the training loop over a dataset and a model file, run directories,
 * metrics and TensorBoard summaries. Stands on data and nn. */
#ifndef SLIPWAY_TRAIN_H
#define SLIPWAY_TRAIN_H

#include "slipway/base.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- TensorBoard summaries (summary.c) ---------------------------------------- */

/* An event file as TensorBoard reads it: TFRecord frames of tensorboard Event protos,
 * the first holding file_version "brain.Event:2", then one Event per scalar with a
 * Summary of one value (tag, simple_value). Named events.out.tfevents.SECONDS.HOST
 * (TensorBoard's convention) in dir. */
typedef struct sw_summary_writer sw_summary_writer;
sw_status sw_summary_open(const char *dir, sw_summary_writer **out);
sw_status sw_summary_scalar(sw_summary_writer *w, int64_t step, const char *tag, float value);
/* Flushes buffered events to disk (fflush + fsync). */
sw_status sw_summary_flush(sw_summary_writer *w);
/* The file's path (owned by the writer). */
const char *sw_summary_path(const sw_summary_writer *w);
/* Flushes and closes; NULL is a no-op. */
void sw_summary_close(sw_summary_writer *w);

#ifdef __cplusplus
}
#endif
#endif
