/* Private header of the data pipeline: what its files share and nobody else sees. */
#ifndef SLIPWAY_DATA_INT_H
#define SLIPWAY_DATA_INT_H

#include "slipway/data.h"

/* ---- WAV and MFCC (wav.c, mfcc.c) ------------------------------------------ */

/* Decodes a RIFF/WAVE file held in memory: PCM 16-bit, mono or more channels (mixed down
 * to mono by averaging). *samples (caller sw_frees) gets values in [-1, 1). Anything else
 * (not RIFF, not WAVE, no fmt or data chunk, compressed format, other bit depths,
 * truncated chunk) is FORMAT or UNSUPPORTED with the reason in sw_last_error(). */
sw_status sw__wav_decode(const uint8_t *data, size_t len, float **samples, size_t *n_samples,
                         int *sample_rate);

typedef struct {
  int frames;       /* output frames: trimmed audio padded with zeros or cut to this */
  int coeffs;       /* cepstral coefficients kept (c0..c{coeffs-1}) */
  int mel_bands;    /* triangular mel filters */
  double frame_ms;  /* window length, 25 */
  double hop_ms;    /* hop, 10 */
  double trim_db;   /* frames quieter than the loudest by more than this are trimmed
                       from both ends; <= 0: no trimming */
} sw__mfcc_options;

typedef struct sw__mfcc sw__mfcc;
/* Plans the FFT and filterbank for one sample rate (FFTW single precision). */
sw_status sw__mfcc_new(const sw__mfcc_options *opt, int sample_rate, sw__mfcc **out);
/* Writes frames*coeffs floats (row-major [frame][coeff]) to out. TRUNCATED (with a
 * message) when the audio is shorter than one frame or silent throughout. */
sw_status sw__mfcc_compute(sw__mfcc *m, const float *samples, size_t n, float *out);
void sw__mfcc_free(sw__mfcc *m);

/* ---- prep internals (prep.c and the ingest_*.c files) ----------------------- */

/* Reason codes of quarantine.jsonl; stable names, used by tests and dashboards. */
#define SW_REASON_MALFORMED "malformed"                 /* unparsable line/record/file */
#define SW_REASON_FIELD_COUNT "wrong_field_count"       /* CSV row with too few/many fields */
#define SW_REASON_WRONG_TYPE "wrong_type"               /* text where a number belongs, ... */
#define SW_REASON_MISSING "missing_feature"             /* required feature absent or empty */
#define SW_REASON_NOT_FINITE "not_finite"               /* NaN or infinity */
#define SW_REASON_OUT_OF_DOMAIN "out_of_domain"         /* string not in the feature's values */
#define SW_REASON_OUT_OF_RANGE "out_of_range"           /* number outside the schema's min/max */
#define SW_REASON_WRONG_SHAPE "wrong_shape"             /* wrong number of values */
#define SW_REASON_OOD "out_of_distribution"             /* beyond --max-z robust z-scores */
#define SW_REASON_DUPLICATE_KEY "duplicate_key"         /* a JSON key or Example feature twice */
#define SW_REASON_BAD_ENCODING "bad_encoding"           /* text that is not UTF-8 */
#define SW_REASON_UNKNOWN_FEATURE "unknown_feature"     /* a feature the schema does not know */
#define SW_REASON_BAD_LABEL "bad_label"                 /* label outside the known classes */
#define SW_REASON_CORRUPT "corrupt_record"              /* TFRecord CRC mismatch */
#define SW_REASON_TRUNCATED "truncated_record"          /* file ends inside a record */
#define SW_REASON_UNSUPPORTED "unsupported_format"      /* e.g. 24-bit WAV */
#define SW_REASON_TOO_SHORT "too_short"                 /* audio shorter than one frame, silent */

/* Where an input record came from. */
typedef struct {
  const char *source; /* file name, owned by the prep context */
  uint64_t line;      /* 1-based line, 0 when the source has no lines */
  uint64_t offset;    /* byte offset in the (decompressed) file */
} sw__location;

typedef struct {
  sw__location loc;
  sw_example ex;
  int fixed_split;  /* split index the source decided, SW__SPLIT_TEST for the source's own
                       test split (idx's t10k), or -1 */
  int split;        /* assigned split index, -1 before assignment */
  bool quarantined;
  char *raw;        /* the raw record as text (tabular sources), NULL otherwise */
  size_t raw_len;
} sw__record;

#define SW__MAX_SPLITS 8

/* One line of quarantine.jsonl, with where it sorts: by source, then offset. */
typedef struct sw__quarantined {
  const char *source;
  uint64_t offset;
  char *line; /* JSON, no newline */
} sw__quarantined;
#define SW__SPLIT_TEST (-2)

typedef struct sw__prep {
  const sw_prep_options *opt;
  sw_schema *schema;          /* given or inferred */
  bool schema_given;          /* from --schema or the source dataset: kept as it is */
  const char *label;          /* label feature name, or NULL */
  sw__record *records;
  size_t n_records, cap_records;
  uint64_t n_read;            /* records read = accepted + quarantined */
  uint64_t n_quarantined;
  json_t *reasons;            /* reason -> count */
  json_t *examples;           /* the first few quarantined records, for the report */
  struct sw__quarantined *quarantine; /* quarantine.jsonl lines, sorted when written */
  size_t n_quarantine_lines, cap_quarantine_lines;
  json_t *source_files;       /* [{path, bytes, sha256}] */
  char **source_names;        /* interned source file names */
  size_t n_source_names;
  int n_splits;
  char *split_names[SW__MAX_SPLITS];
  double split_fracs[SW__MAX_SPLITS];
  bool source_has_test;       /* the source fixes the test split (idx t10k, --test-input) */
  int ingest_split;           /* fixed split of the records being read: -1, or SW__SPLIT_TEST
                                 while csv, jsonl and wav read --test-input */
  double max_z;               /* resolved */
} sw__prep;

/* Interns a source file name for sw__location.source, and records the file (size,
 * SHA-256) in the manifest's source list when path is a real file. */
sw_status sw__prep_source(sw__prep *p, const char *path, const char **name);
/* Appends a record (taking ownership of ex's contents and raw) and counts it read. */
sw_status sw__prep_add(sw__prep *p, const sw__location *loc, sw_example *ex, int fixed_split,
                       char *raw, size_t raw_len);
/* Writes one quarantine.jsonl line and counts the record read and quarantined. raw is
 * text (binary=false, written as "raw") or bytes (written as "raw_base64", capped). */
sw_status sw__quarantine(sw__prep *p, const sw__location *loc, const char *reason,
                         const char *feature, const char *detail, const void *raw,
                         size_t raw_len, bool binary);
/* Index of a split name in p->split_names, -1 when absent. */
int sw__prep_split_index(const sw__prep *p, const char *name);

/* Sources: each reads opt->path, adds records and quarantines, and sets p->schema when
 * it knows it (idx, wav) or infers it (csv, jsonl, tfrecord) unless one was given. */
sw_status sw__ingest_csv(sw__prep *p);
sw_status sw__ingest_jsonl(sw__prep *p);
sw_status sw__ingest_idx(sw__prep *p);
sw_status sw__ingest_wav(sw__prep *p);
sw_status sw__ingest_tfrecord(sw__prep *p);

/* Checks ex against the schema. Returns NULL when valid, else the reason code, with the
 * feature name and a human detail written to feature/detail. */
const char *sw__validate_example(const sw_schema *s, const sw_example *ex, char *feature,
                                 size_t feature_len, char *detail, size_t detail_len);
/* True when s holds valid UTF-8. */
bool sw__utf8_valid(const uint8_t *s, size_t n);

/* Distinct strings of a feature, counted for inference (infer.c). Zero-initialize. */
typedef struct {
  json_t *counts;  /* value -> count */
  uint64_t total;  /* values seen */
  bool too_many;   /* more distinct values than are tracked, or binary values */
} sw__value_counts;
void sw__value_counts_add(sw__value_counts *vc, const uint8_t *s, size_t n);
void sw__value_counts_free(sw__value_counts *vc);
/* The sorted values: every one (all, for class names) or, for a domain, those seen
 * at least twice when there are at most 50 and they cover 99% of the values; *n = 0
 * when the feature is not categorical. */
sw_status sw__value_counts_list(const sw__value_counts *vc, bool all, char ***out, size_t *n);
/* Class names "0".."n-1" for an int label. */
sw_status sw__numbered_classes(sw_feature_spec *f, size_t n);

/* Statistics of a split (the stats.json entry) and the transform (manifest entry). */
json_t *sw__split_stats(const sw__prep *p, int split);
json_t *sw__transform(const sw__prep *p, const json_t *train_stats);

#endif
