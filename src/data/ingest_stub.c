#include "data/data_int.h"
sw_status sw__ingest_csv(sw__prep *p) { (void)p; return sw_error(SW_STATUS_UNSUPPORTED, "csv: not yet"); }
sw_status sw__ingest_jsonl(sw__prep *p) { (void)p; return sw_error(SW_STATUS_UNSUPPORTED, "jsonl: not yet"); }
sw_status sw__ingest_wav(sw__prep *p) { (void)p; return sw_error(SW_STATUS_UNSUPPORTED, "wav: not yet"); }
sw_status sw__ingest_tfrecord(sw__prep *p) { (void)p; return sw_error(SW_STATUS_UNSUPPORTED, "tfrecord: not yet"); }
