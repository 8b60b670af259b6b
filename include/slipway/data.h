/* slipway data pipeline: tf.train.Example and TFRecord codecs, the CSV parser, the
 * dataset schema, `prep` (ingest, validate, quarantine, shard) and the dataset reader
 * that train and eval use. Stands on base alone. */
#ifndef SLIPWAY_DATA_H
#define SLIPWAY_DATA_H

#include "slipway/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define SW_MAX_RANK 6

/* ---- tf.train.Example in memory ----------------------------------------- */

/* The oneof of tf.train.Feature, numbered as its fields are. */
typedef enum {
  SW_FEATURE_KIND_NONE = 0,
  SW_FEATURE_KIND_BYTES = 1,
  SW_FEATURE_KIND_FLOAT = 2,
  SW_FEATURE_KIND_INT64 = 3
} sw_feature_kind;

const char *sw_feature_kind_name(sw_feature_kind k); /* "bytes", "float", "int" */

typedef struct {
  uint8_t *data;
  size_t len;
} sw_bytes;

/* One feature of an example. The example owns name and values. */
typedef struct {
  char *name;
  sw_feature_kind kind;
  size_t count;
  union {
    sw_bytes *bytes;
    float *f32;
    int64_t *i64;
  } v;
} sw_feature;

typedef struct {
  size_t n_features;
  sw_feature *features;
} sw_example;

/* The add functions copy name and values; a name already present is an error (INVALID). */
sw_status sw_example_add_float(sw_example *ex, const char *name, const float *v, size_t n);
sw_status sw_example_add_int64(sw_example *ex, const char *name, const int64_t *v, size_t n);
sw_status sw_example_add_bytes(sw_example *ex, const char *name, const sw_bytes *v, size_t n);
/* NULL when absent. */
const sw_feature *sw_example_find(const sw_example *ex, const char *name);
/* Frees everything ex holds and leaves it empty; ex itself is the caller's. */
void sw_example_clear(sw_example *ex);
/* Serializes ex as a tf.train.Example (features map written in key order, so equal
 * examples give equal bytes, as Python's deterministic serialization does); appends
 * to out. */
sw_status sw_example_encode(const sw_example *ex, sw_buf *out);
/* Parses a serialized tf.train.Example into an empty ex. Duplicate keys, unknown
 * kinds and malformed protobuf are FORMAT errors; on error ex is left empty. */
sw_status sw_example_decode(const uint8_t *data, size_t len, sw_example *ex);

/* ---- TFRecord framing ----------------------------------------------------- */

/* One TFRecord frame, little-endian:
 *   offset     size  field
 *   0          8     length L of data (u64)
 *   8          4     masked CRC32C of bytes 0..7
 *   12         L     data (here: a serialized tf.train.Example)
 *   12+L       4     masked CRC32C of data
 */
#define SW_TFRECORD_OVERHEAD 16

/* Appends one frame holding data to out. */
sw_status sw_tfrecord_frame(sw_buf *out, const void *data, size_t len);

typedef struct sw_tfrecord_reader sw_tfrecord_reader;
/* Maps the file read-only. name is used in messages (the shard's file name). */
sw_status sw_tfrecord_open(const char *path, sw_tfrecord_reader **out);
/* Reads frames from memory the caller keeps alive (fuzzing, tests). */
sw_status sw_tfrecord_open_mem(const uint8_t *data, size_t len, const char *name,
                               sw_tfrecord_reader **out);
/* Next record: *data points into the mapping (valid until close), *offset is the frame's
 * byte offset. Returns EOF at a clean end, TRUNCATED when the file ends inside a frame,
 * CORRUPT on a CRC mismatch; both with "NAME: offset N: ..." in sw_last_error(). After
 * an error the reader stays at the failing frame. */
sw_status sw_tfrecord_next(sw_tfrecord_reader *r, const uint8_t **data, size_t *len,
                           uint64_t *offset);
/* Reads the frame at a byte offset, with the same checks. */
sw_status sw_tfrecord_read_at(sw_tfrecord_reader *r, uint64_t offset, const uint8_t **data,
                              size_t *len);
/* After sw_tfrecord_next failed with a data CRC mismatch, moves past that frame (its
 * length is trustworthy: the length CRC matched). Returns the frame's own error again
 * when its header is bad, since then nothing after it can be found. */
sw_status sw_tfrecord_skip(sw_tfrecord_reader *r);
/* Moves the cursor of sw_tfrecord_next to a byte offset. */
void sw_tfrecord_seek(sw_tfrecord_reader *r, uint64_t offset);
uint64_t sw_tfrecord_size(const sw_tfrecord_reader *r);
const char *sw_tfrecord_name(const sw_tfrecord_reader *r);
void sw_tfrecord_close(sw_tfrecord_reader *r);

/* ---- CSV (RFC 4180) ------------------------------------------------------- */

typedef struct {
  size_t n_fields;
  char **fields;       /* unquoted, NUL-terminated; owned by the reader until next call */
  size_t *field_lens;  /* lengths (fields may hold NUL bytes) */
  uint64_t line;       /* 1-based line where the record starts */
  uint64_t offset;     /* byte offset where the record starts */
  const char *raw;     /* the record's bytes in the input, without the line ending */
  size_t raw_len;
} sw_csv_record;

typedef struct sw_csv_reader sw_csv_reader;
/* Reads CSV from memory the caller keeps alive. Records end at LF or CRLF; fields are
 * separated by delim; quoted fields may hold delimiters, line breaks and "" for a quote. */
sw_status sw_csv_open_mem(const char *data, size_t len, char delim, sw_csv_reader **out);
/* Next record into *rec. Blank lines are skipped. Returns EOF at the end; FORMAT for a
 * malformed record (unterminated quote, text after a closing quote) with the detail in
 * sw_last_error() and rec's line, offset and raw set: the reader has already moved past
 * the bad line, so the caller can quarantine it and go on. */
sw_status sw_csv_next(sw_csv_reader *r, sw_csv_record *rec);
/* Tells the reader how many fields a record has (the header's count; 0: any). A record
 * whose quoted field spans lines but which then has another count is taken for an
 * unterminated quote on its first line: FORMAT, and reading resumes on the next line. */
void sw_csv_expect_fields(sw_csv_reader *r, size_t n);
void sw_csv_close(sw_csv_reader *r);

/* ---- schema ---------------------------------------------------------------- */

/* What one feature must look like. `shape` is the shape of one example's value:
 * rank 0 a scalar (one value); a dimension of -1 is variable. An image is a bytes
 * feature holding one raw uint8 tensor of `shape`. */
typedef struct {
  char *name;
  sw_feature_kind kind;
  bool image;        /* bytes holding a raw uint8 tensor of `shape` */
  int rank;
  int64_t shape[SW_MAX_RANK];
  bool required;     /* missing values are quarantined when true */
  bool is_label;
  bool has_min, has_max;
  double min, max;   /* value range (numbers, or pixel values for images) */
  size_t n_values;   /* string domain for bytes features (sorted); 0 = any */
  char **values;
  size_t n_classes;  /* class names of an int label (class i is names[i]) */
  char **class_names;
} sw_feature_spec;

typedef struct {
  size_t n_features;
  sw_feature_spec *features;
  int label; /* index of the label feature, or -1 */
} sw_schema;

/* Loads schema.json (the form sw_schema_to_json writes). Caller frees with sw_schema_free. */
sw_status sw_schema_load(const char *path, sw_schema **out);
sw_status sw_schema_from_json(const json_t *j, const char *name, sw_schema **out);
json_t *sw_schema_to_json(const sw_schema *s);
const sw_feature_spec *sw_schema_find(const sw_schema *s, const char *name);
/* Elements per example of a fixed-shape feature (product of shape), -1 if variable. */
int64_t sw_feature_spec_elements(const sw_feature_spec *f);
void sw_schema_free(sw_schema *s);

/* ---- prep ------------------------------------------------------------------- */

typedef struct {
  const char *kind;        /* csv, jsonl, idx, wav, tfrecord */
  const char *path;
  const char *out_dir;
  const char *schema_path; /* NULL: infer */
  const char *test_path;   /* NULL, or a second input of the same kind (csv, jsonl, wav) whose
                              records form the test split, as idx's t10k files do; the schema
                              comes from path (or schema_path) alone */
  const char *split_spec;  /* NULL: train=0.8,val=0.1,test=0.1 (train=0.9,val=0.1 when the
                              source has its own test split) */
  const char *label;       /* label field for csv/jsonl/tfrecord; NULL: "label" if present */
  int shards;              /* shards of the train split; others in proportion; <= 0: 4 */
  uint64_t seed;
  double max_z;            /* < 0: default (6 for csv/jsonl numbers, off otherwise); 0: off */
  double max_quarantine_fraction; /* < 0: default 0.05 */
  bool overwrite;          /* replace an existing out_dir */
  /* wav */
  int mfcc_frames;         /* <= 0: 100 */
  int mfcc_coeffs;         /* <= 0: 13 */
  int mel_bands;           /* <= 0: 40 */
} sw_prep_options;

/* Runs the whole of `slipway prep`. On success out_dir holds a complete dataset (built
 * in a temporary sibling directory and renamed into place). *report (caller owns) is a
 * summary: counts read/accepted/quarantined by reason, splits, shards, output path.
 * Returns REFUSED when more than max_quarantine_fraction of the records are bad: then
 * no dataset is written and *report still says why. */
sw_status sw_prep_run(const sw_prep_options *opt, json_t **report);

/* ---- dataset reader ----------------------------------------------------------- */

typedef struct sw_dataset sw_dataset;
/* Opens a dataset dir: reads manifest.json and schema.json, checks every shard is there
 * with its recorded size. Caller closes. */
sw_status sw_dataset_open(const char *dir, sw_dataset **out);
void sw_dataset_close(sw_dataset *ds);
const sw_schema *sw_dataset_schema(const sw_dataset *ds);
const json_t *sw_dataset_manifest(const sw_dataset *ds);
/* SHA-256 of manifest.json: the dataset's identity in lineage. */
const char *sw_dataset_sha256(const sw_dataset *ds);
/* Number of examples in a split; -1 when the split does not exist. */
int64_t sw_dataset_split_examples(const sw_dataset *ds, const char *split);
/* Re-hashes every shard against the manifest (CORRUPT naming the shard on mismatch). */
sw_status sw_dataset_verify(const sw_dataset *ds);

typedef struct {
  uint64_t epoch;
  uint64_t index; /* examples of this epoch already yielded */
} sw_reader_pos;

typedef struct {
  uint64_t seed;
  bool shuffle; /* order of each epoch a permutation fixed by (seed, epoch) */
} sw_reader_options;

/* One feature of a batch: shape[0] is the batch size; data is f32 or i64, C order.
 * Images arrive as f32 raw pixel values, categorical strings as i64 indices into the
 * schema's domain (-1 when unknown), missing optional numbers as the training mean. */
typedef struct {
  const char *name;
  sw_dtype dtype;
  int rank; /* including the batch dimension */
  int64_t shape[SW_MAX_RANK + 1];
  void *data;
} sw_batch_tensor;

typedef struct {
  size_t n; /* examples in this batch */
  size_t n_tensors;
  sw_batch_tensor *tensors;
} sw_batch;

typedef struct sw_reader sw_reader;
/* Reads one split. Features of variable shape or without a numeric form are left out
 * of batches (with a debug log). */
sw_status sw_reader_open(sw_dataset *ds, const char *split, const sw_reader_options *opt,
                         sw_reader **out);
/* Up to max examples of the current epoch into a batch owned by the reader (valid until
 * the next call; its memory is reserved on the first call for max and reused). Returns
 * EOF, with no examples, once an epoch is exhausted, and moves to the next epoch. A bad
 * record is CORRUPT/TRUNCATED/FORMAT with "shard offset N" in sw_last_error(). */
sw_status sw_reader_next(sw_reader *r, size_t max, const sw_batch **out);
sw_reader_pos sw_reader_tell(const sw_reader *r);
sw_status sw_reader_seek(sw_reader *r, sw_reader_pos pos);
uint64_t sw_reader_examples(const sw_reader *r);
const sw_batch_tensor *sw_batch_find(const sw_batch *b, const char *name);
void sw_reader_close(sw_reader *r);

#ifdef __cplusplus
}
#endif
#endif
