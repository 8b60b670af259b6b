/* TFRecord framing (the layout is drawn in data.h): writing frames, and reading them
 * from a read-only mapping with both CRCs checked, so a bad byte is an error that names
 * the file and the frame's offset, never a record of garbage. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_int.h"

struct sw_tfrecord_reader {
  char *name;
  const uint8_t *data;
  size_t size;
  bool mapped;
  uint64_t pos;
};

static inline uint64_t load_u64le(const uint8_t *p) {
  uint64_t v;
  memcpy(&v, p, 8);
  return v; /* host is little-endian (checked below) */
}

static inline uint32_t load_u32le(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "TFRecord code assumes little-endian");

sw_status sw_tfrecord_frame(sw_buf *out, const void *data, size_t len) {
  sw_status st = sw_buf_reserve(out, len + SW_TFRECORD_OVERHEAD + 1);
  if (st) return st;
  uint8_t *p = out->data + out->len;
  uint64_t l = len;
  memcpy(p, &l, 8);
  uint32_t c = sw_crc32c_mask(sw_crc32c(0, p, 8));
  memcpy(p + 8, &c, 4);
  if (len) memcpy(p + 12, data, len);
  c = sw_crc32c_mask(sw_crc32c(0, data, len));
  memcpy(p + 12 + len, &c, 4);
  out->len += len + SW_TFRECORD_OVERHEAD;
  return SW_STATUS_OK;
}

sw_status sw_tfrecord_open_mem(const uint8_t *data, size_t len, const char *name,
                               sw_tfrecord_reader **out) {
  *out = NULL;
  sw_tfrecord_reader *r = sw_calloc(1, sizeof *r);
  if (!r) return sw_error(SW_STATUS_NOMEM, "out of memory");
  r->name = sw_strdup(name ? name : "<memory>");
  if (!r->name) {
    sw_free(r);
    return sw_error(SW_STATUS_NOMEM, "out of memory");
  }
  r->data = data;
  r->size = len;
  *out = r;
  return SW_STATUS_OK;
}

sw_status sw_tfrecord_open(const char *path, sw_tfrecord_reader **out) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return sw_error(errno == ENOENT ? SW_STATUS_NOT_FOUND : SW_STATUS_IO, "open %s: %s", path,
                    strerror(errno));
  struct stat sb;
  if (fstat(fd, &sb) != 0) {
    close(fd);
    return sw_error(SW_STATUS_IO, "stat %s: %s", path, strerror(errno));
  }
  const uint8_t *map = NULL;
  size_t size = (size_t)sb.st_size;
  if (size > 0) {
    void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      close(fd);
      return sw_error(SW_STATUS_IO, "mmap %s: %s", path, strerror(errno));
    }
    madvise(m, size, MADV_SEQUENTIAL);
    map = m;
  }
  close(fd);
  const char *base = strrchr(path, '/');
  sw_status st = sw_tfrecord_open_mem(map, size, base ? base + 1 : path, out);
  if (st) {
    if (map) munmap((void *)map, size);
    return st;
  }
  (*out)->mapped = map != NULL;
  return SW_STATUS_OK;
}

sw_status sw_tfrecord_read_at(sw_tfrecord_reader *r, uint64_t offset, const uint8_t **data,
                              size_t *len) {
  *data = NULL;
  *len = 0;
  if (offset >= r->size) {
    if (offset == r->size) return SW_STATUS_EOF;
    return sw_error(SW_STATUS_RANGE, "%s: offset %llu is past the end (%zu bytes)", r->name,
                    (unsigned long long)offset, r->size);
  }
  size_t left = r->size - (size_t)offset;
  const uint8_t *p = r->data + offset;
  if (left < 12)
    return sw_error(SW_STATUS_TRUNCATED,
                    "%s: offset %llu: truncated record header (%zu of 12 bytes)", r->name,
                    (unsigned long long)offset, left);
  uint64_t l = load_u64le(p);
  uint32_t want = load_u32le(p + 8);
  if (sw_crc32c_mask(sw_crc32c(0, p, 8)) != want)
    return sw_error(SW_STATUS_CORRUPT, "%s: offset %llu: length CRC mismatch (corrupt record header)",
                    r->name, (unsigned long long)offset);
  if (l > left - 12 || left - 12 - l < 4)
    return sw_error(SW_STATUS_TRUNCATED,
                    "%s: offset %llu: truncated record (declares %llu bytes, %zu left in file)",
                    r->name, (unsigned long long)offset, (unsigned long long)l, left - 12);
  /* the CRC first: reading through the data brings its stored CRC into cache */
  uint32_t got = sw_crc32c_mask(sw_crc32c(0, p + 12, (size_t)l));
  if (got != load_u32le(p + 12 + l))
    return sw_error(SW_STATUS_CORRUPT, "%s: offset %llu: data CRC mismatch (corrupt record of %llu bytes)",
                    r->name, (unsigned long long)offset, (unsigned long long)l);
  *data = p + 12;
  *len = (size_t)l;
  return SW_STATUS_OK;
}

sw_status sw_tfrecord_next(sw_tfrecord_reader *r, const uint8_t **data, size_t *len,
                           uint64_t *offset) {
  if (offset) *offset = r->pos;
  sw_status st = sw_tfrecord_read_at(r, r->pos, data, len);
  if (st) return st;
  r->pos += *len + SW_TFRECORD_OVERHEAD;
  return SW_STATUS_OK;
}

void sw_tfrecord_seek(sw_tfrecord_reader *r, uint64_t offset) { r->pos = offset; }

uint64_t sw_tfrecord_size(const sw_tfrecord_reader *r) { return r->size; }

const char *sw_tfrecord_name(const sw_tfrecord_reader *r) { return r->name; }

void sw_tfrecord_close(sw_tfrecord_reader *r) {
  if (!r) return;
  if (r->mapped) munmap((void *)r->data, r->size);
  sw_free(r->name);
  sw_free(r);
}

sw_status sw_tfrecord_skip(sw_tfrecord_reader *r) {
  size_t left = r->pos < r->size ? r->size - (size_t)r->pos : 0;
  const uint8_t *p = r->data + r->pos;
  if (left < 12)
    return sw_error(SW_STATUS_TRUNCATED, "%s: offset %llu: truncated record header", r->name,
                    (unsigned long long)r->pos);
  if (sw_crc32c_mask(sw_crc32c(0, p, 8)) != load_u32le(p + 8))
    return sw_error(SW_STATUS_CORRUPT, "%s: offset %llu: length CRC mismatch, cannot find the next record",
                    r->name, (unsigned long long)r->pos);
  uint64_t l = load_u64le(p);
  if (l > left - 12 || left - 12 - l < 4)
    return sw_error(SW_STATUS_TRUNCATED, "%s: offset %llu: truncated record", r->name, (unsigned long long)r->pos);
  r->pos += l + SW_TFRECORD_OVERHEAD;
  return SW_STATUS_OK;
}
