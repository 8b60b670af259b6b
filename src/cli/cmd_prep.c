/* slipway prep: flags in, sw_prep_run does the work, a summary (or --json) out. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "slipway/data.h"

static void help(void) {
  printf(
      "usage: slipway prep --input KIND:PATH --out DIR [flags]\n"
      "\n"
      "Reads raw data, infers (or takes) a schema, validates every record, quarantines the\n"
      "bad ones with a reason each, splits, and writes sharded TFRecord files with a\n"
      "manifest, schema.json, stats.json and quarantine.jsonl.\n"
      "\n"
      "KIND is one of:\n"
      "  csv       a CSV file with a header row (RFC 4180)\n"
      "  jsonl     one JSON object per line\n"
      "  idx       IDX image/label pairs (a directory such as /usr/share/datasets/fashion-mnist,\n"
      "            or one *images-idx3-ubyte[.gz] file); t10k files become the test split\n"
      "  wav       a directory of class-named folders of 16-bit PCM WAV files (-> MFCC)\n"
      "  tfrecord  a TFRecord file, a directory of them, or a slipway dataset (re-validate)\n"
      "\n"
      "flags:\n"
      "  --schema FILE                   validate against this schema.json instead of inferring\n"
      "  --test-input PATH               a second csv, jsonl or wav input (same kind) that is the\n"
      "                                  test split, e.g. held-out speakers; --split names the rest\n"
      "  --shards N                      shards of the train split (others in proportion; 4)\n"
      "  --split train=0.8,val=0.1,test=0.1   split names and fractions\n"
      "  --seed S                        seed of the split (0)\n"
      "  --label FIELD                   the label column (csv, jsonl, tfrecord; default 'label')\n"
      "  --max-z Z                       quarantine numbers beyond Z robust z-scores of the\n"
      "                                  training split (6 for csv/jsonl, off otherwise; 0 = off)\n"
      "  --max-quarantine-fraction F     fail with exit 3 when more than F are bad (0.05)\n"
      "  --mfcc-frames N, --mfcc-coeffs N, --mel-bands N   wav features (100, 13, 40)\n"
      "  --overwrite                     replace DIR if it exists\n"
      "  --json                          print the report as JSON\n"
      "\n"
      "exit status: 0 written, 1 failure, 2 usage error, 3 too much quarantined (nothing written)\n");
}

static void print_summary(const json_t *r) {
  printf("read %lld records: %lld accepted, %lld quarantined\n",
         (long long)json_integer_value(json_object_get(r, "read")),
         (long long)json_integer_value(json_object_get(r, "accepted")),
         (long long)json_integer_value(json_object_get(r, "quarantined")));
  const char *key;
  json_t *v;
  json_object_foreach(json_object_get(r, "quarantined_by_reason"), key, v) {
    printf("  quarantined %-22s %lld\n", key, (long long)json_integer_value(v));
  }
  json_object_foreach(json_object_get(r, "splits"), key, v) {
    printf("  split %-10s %lld examples\n", key, (long long)json_integer_value(v));
  }
  if (json_object_get(r, "out"))
    printf("wrote %lld shards to %s\n", (long long)json_integer_value(json_object_get(r, "shards")),
           json_string_value(json_object_get(r, "out")));
}

int sw_cmd_prep(int argc, char **argv) {
  enum {
    OPT_INPUT = 256, OPT_OUT, OPT_SCHEMA, OPT_SHARDS, OPT_SPLIT, OPT_SEED, OPT_LABEL, OPT_MAX_Z,
    OPT_MAX_Q, OPT_TEST_INPUT, OPT_JSON, OPT_OVERWRITE, OPT_FRAMES, OPT_COEFFS, OPT_BANDS, OPT_HELP
  };
  static const struct option longopts[] = {
      {"input", required_argument, 0, OPT_INPUT},
      {"out", required_argument, 0, OPT_OUT},
      {"schema", required_argument, 0, OPT_SCHEMA},
      {"shards", required_argument, 0, OPT_SHARDS},
      {"split", required_argument, 0, OPT_SPLIT},
      {"seed", required_argument, 0, OPT_SEED},
      {"label", required_argument, 0, OPT_LABEL},
      {"max-z", required_argument, 0, OPT_MAX_Z},
      {"max-quarantine-fraction", required_argument, 0, OPT_MAX_Q},
      {"test-input", required_argument, 0, OPT_TEST_INPUT},
      {"json", no_argument, 0, OPT_JSON},
      {"overwrite", no_argument, 0, OPT_OVERWRITE},
      {"mfcc-frames", required_argument, 0, OPT_FRAMES},
      {"mfcc-coeffs", required_argument, 0, OPT_COEFFS},
      {"mel-bands", required_argument, 0, OPT_BANDS},
      {"help", no_argument, 0, OPT_HELP},
      {0, 0, 0, 0}};
  sw_prep_options o = {0};
  o.max_z = -1;
  o.max_quarantine_fraction = -1;
  const char *input = NULL;
  bool as_json = false;
  char *kind = NULL;
  int c;
  long long n;
  opterr = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
    switch (c) {
      case OPT_INPUT: input = optarg; break;
      case OPT_OUT: o.out_dir = optarg; break;
      case OPT_SCHEMA: o.schema_path = optarg; break;
      case OPT_TEST_INPUT: o.test_path = optarg; break;
      case OPT_SHARDS:
        if (!sw_cli_parse_int(optarg, 1, 100000, &n)) return sw_cli_usage_error("prep", "--shards: '%s' is not a count from 1 to 100000", optarg);
        o.shards = (int)n;
        break;
      case OPT_SPLIT: o.split_spec = optarg; break;
      case OPT_SEED:
        if (!sw_cli_parse_u64(optarg, &o.seed)) return sw_cli_usage_error("prep", "--seed: '%s' is not a non-negative integer", optarg);
        break;
      case OPT_LABEL: o.label = optarg; break;
      case OPT_MAX_Z:
        if (!sw_cli_parse_double(optarg, 0, 1e9, &o.max_z)) return sw_cli_usage_error("prep", "--max-z: '%s' is not a number >= 0", optarg);
        break;
      case OPT_MAX_Q:
        if (!sw_cli_parse_double(optarg, 0, 1, &o.max_quarantine_fraction))
          return sw_cli_usage_error("prep", "--max-quarantine-fraction: '%s' is not a fraction in [0, 1]", optarg);
        break;
      case OPT_JSON: as_json = true; break;
      case OPT_OVERWRITE: o.overwrite = true; break;
      case OPT_FRAMES:
        if (!sw_cli_parse_int(optarg, 1, 100000, &n)) return sw_cli_usage_error("prep", "--mfcc-frames: bad count '%s'", optarg);
        o.mfcc_frames = (int)n;
        break;
      case OPT_COEFFS:
        if (!sw_cli_parse_int(optarg, 1, 128, &n)) return sw_cli_usage_error("prep", "--mfcc-coeffs: bad count '%s'", optarg);
        o.mfcc_coeffs = (int)n;
        break;
      case OPT_BANDS:
        if (!sw_cli_parse_int(optarg, 2, 512, &n)) return sw_cli_usage_error("prep", "--mel-bands: bad count '%s'", optarg);
        o.mel_bands = (int)n;
        break;
      case OPT_HELP: help(); return SW_EXIT_OK;
      default:
        return sw_cli_usage_error("prep", "unknown or incomplete flag '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return sw_cli_usage_error("prep", "unexpected argument '%s'", argv[optind]);
  if (!input) return sw_cli_usage_error("prep", "--input KIND:PATH is required");
  if (!o.out_dir) return sw_cli_usage_error("prep", "--out DIR is required");
  const char *colon = strchr(input, ':');
  if (!colon || colon == input || !colon[1])
    return sw_cli_usage_error("prep", "--input must be KIND:PATH (e.g. csv:data.csv), not '%s'", input);
  kind = strndup(input, (size_t)(colon - input));
  o.kind = kind;
  o.path = colon + 1;
  if (strcmp(kind, "csv") && strcmp(kind, "jsonl") && strcmp(kind, "idx") && strcmp(kind, "wav") &&
      strcmp(kind, "tfrecord")) {
    int rc = sw_cli_usage_error("prep", "unknown input kind '%s' (csv, jsonl, idx, wav, tfrecord)", kind);
    free(kind);
    return rc;
  }

  if (o.test_path && strcmp(kind, "csv") && strcmp(kind, "jsonl") && strcmp(kind, "wav")) {
    int rc = sw_cli_usage_error("prep", "--test-input is for csv, jsonl and wav inputs, not %s", kind);
    free(kind);
    return rc;
  }
  json_t *report = NULL;
  sw_status st = sw_prep_run(&o, &report);
  if (st && st != SW_STATUS_REFUSED) {
    fprintf(stderr, "slipway prep: %s\n", sw_last_error()[0] ? sw_last_error() : sw_strerror(st));
    free(kind);
    return sw_cli_exit_code(st);
  }
  if (as_json) {
    if (st) json_object_set_new(report, "error", json_string(sw_last_error()));
    json_dumpf(report, stdout, JSON_INDENT(2));
    fputc('\n', stdout);
  } else {
    print_summary(report);
  }
  if (st) {
    fprintf(stderr, "slipway prep: %s\n", sw_last_error());
    const json_t *ex;
    size_t i;
    json_array_foreach(json_object_get(report, "quarantine_examples"), i, ex) {
      fprintf(stderr, "  %s:%lld %s: %s\n", json_string_value(json_object_get(ex, "source")),
              (long long)(json_object_get(ex, "line") ? json_integer_value(json_object_get(ex, "line"))
                                                       : json_integer_value(json_object_get(ex, "offset"))),
              json_string_value(json_object_get(ex, "reason")), json_string_value(json_object_get(ex, "detail")));
    }
  }
  json_decref(report);
  free(kind);
  return sw_cli_exit_code(st);
}
