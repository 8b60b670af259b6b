/* RIFF/WAVE decoding for `prep --kind wav`: a bounds-checked walk over the chunks of a
 * file held in memory, giving mono float samples that mfcc.c turns into features.
 * Only 16-bit PCM is read; anything else is refused with the reason. */
#include <string.h>

#include "data/data_int.h"

/* A RIFF/WAVE file, all integers little-endian:
 *   offset  size  field
 *   0       4     "RIFF"
 *   4       4     size of what follows (often wrong in the wild; not relied upon)
 *   8       4     "WAVE"
 *   12      ...   chunks, each:
 *                   0  4  id ("fmt ", "data", "LIST", ...)
 *                   4  4  size N of the body
 *                   8  N  body, then one pad byte when N is odd
 *
 * The "fmt " body (16 bytes at least; 40 for WAVE_FORMAT_EXTENSIBLE):
 *   offset  size  field
 *   0       2     format tag: 1 PCM, 3 IEEE float, 0xFFFE extensible, ...
 *   2       2     channels
 *   4       4     sample rate
 *   8       4     byte rate
 *   12      2     block align (bytes per frame of all channels)
 *   14      2     bits per sample
 *   16      2     cbSize (extensible: 22)
 *   18      2     valid bits per sample
 *   20      4     channel mask
 *   24      16    subformat GUID: format tag (2 bytes) + 00 00 00 00 10 00 80 00 00 AA 00 38 9B 71
 *
 * The "data" body holds interleaved frames of block-align bytes. */

#define WAV_RIFF_HEADER 12
#define WAV_CHUNK_HEADER 8
#define WAV_FMT_MIN 16
#define WAV_FMT_EXTENSIBLE_MIN 40

#define WAVE_FORMAT_PCM 0x0001
#define WAVE_FORMAT_IEEE_FLOAT 0x0003
#define WAVE_FORMAT_EXTENSIBLE 0xFFFE

/* Bytes 2..15 of KSDATAFORMAT_SUBTYPE_PCM (and of every subtype derived from a tag). */
static const uint8_t wav_guid_tail[14] = {0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                          0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71};

static uint16_t rd_u16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }

static uint32_t rd_u32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* The chunk id as printable text for messages (non-printable bytes become '?'). */
static void chunk_name(const uint8_t *id, char name[5]) {
  for (int i = 0; i < 4; i++) name[i] = (id[i] >= 0x20 && id[i] < 0x7f) ? (char)id[i] : '?';
  name[4] = '\0';
}

typedef struct {
  int channels;
  int sample_rate;
  int block_align;
} wav_format;

/* Checks a "fmt " body of len bytes and fills *f; FORMAT or UNSUPPORTED otherwise. */
static sw_status parse_fmt(const uint8_t *body, size_t len, wav_format *f) {
  if (len < WAV_FMT_MIN)
    return sw_error(SW_STATUS_FORMAT, "wav: fmt chunk is %zu bytes, needs at least %d", len,
                    WAV_FMT_MIN);
  unsigned tag = rd_u16(body);
  unsigned channels = rd_u16(body + 2);
  uint32_t rate = rd_u32(body + 4);
  unsigned block_align = rd_u16(body + 12);
  unsigned bits = rd_u16(body + 14);

  if (tag == WAVE_FORMAT_EXTENSIBLE) {
    if (len < WAV_FMT_EXTENSIBLE_MIN)
      return sw_error(SW_STATUS_FORMAT,
                      "wav: WAVE_FORMAT_EXTENSIBLE fmt chunk is %zu bytes, needs %d", len,
                      WAV_FMT_EXTENSIBLE_MIN);
    const uint8_t *guid = body + 24;
    if (memcmp(guid + 2, wav_guid_tail, sizeof wav_guid_tail) != 0)
      return sw_error(SW_STATUS_UNSUPPORTED,
                      "wav: WAVE_FORMAT_EXTENSIBLE with an unknown subformat GUID");
    tag = rd_u16(guid);
    if (tag == WAVE_FORMAT_EXTENSIBLE)
      return sw_error(SW_STATUS_FORMAT, "wav: extensible subformat is itself extensible");
  }
  if (tag == WAVE_FORMAT_IEEE_FLOAT)
    return sw_error(SW_STATUS_UNSUPPORTED,
                    "wav: IEEE float samples (%u-bit) are not supported, only 16-bit PCM", bits);
  if (tag != WAVE_FORMAT_PCM)
    return sw_error(SW_STATUS_UNSUPPORTED,
                    "wav: format tag 0x%04x is not supported, only 16-bit PCM", tag);
  if (bits != 16)
    return sw_error(SW_STATUS_UNSUPPORTED, "wav: %u-bit PCM is not supported, only 16-bit", bits);
  if (channels == 0) return sw_error(SW_STATUS_FORMAT, "wav: fmt chunk declares 0 channels");
  if (rate == 0 || rate > (uint32_t)INT32_MAX)
    return sw_error(SW_STATUS_FORMAT, "wav: sample rate %u is out of range", (unsigned)rate);
  if (block_align != channels * 2u)
    return sw_error(SW_STATUS_FORMAT, "wav: block align %u does not match %u channels of 16 bits",
                    block_align, channels);
  f->channels = (int)channels;
  f->sample_rate = (int)rate;
  f->block_align = (int)block_align;
  return SW_STATUS_OK;
}

/* Mixes interleaved 16-bit frames down to mono floats in a new buffer. A trailing
 * partial frame (data size not a multiple of block align) is ignored. */
static sw_status mix_down(const uint8_t *body, size_t len, const wav_format *f, float **out,
                          size_t *n_out) {
  size_t n = len / (size_t)f->block_align;
  float *s = sw_malloc(n * sizeof *s);
  if (!s) return sw_error(SW_STATUS_NOMEM, "wav: out of memory for %zu samples", n);
  const double scale = 1.0 / (32768.0 * f->channels);
  for (size_t i = 0; i < n; i++) {
    const uint8_t *frame = body + i * (size_t)f->block_align;
    int64_t sum = 0;
    for (int c = 0; c < f->channels; c++) sum += (int16_t)rd_u16(frame + 2 * c);
    s[i] = (float)((double)sum * scale);
  }
  *out = s;
  *n_out = n;
  return SW_STATUS_OK;
}

sw_status sw__wav_decode(const uint8_t *data, size_t len, float **samples, size_t *n_samples,
                         int *sample_rate) {
  sw_status st = SW_STATUS_OK;
  wav_format fmt = {0, 0, 0};
  bool have_fmt = false;

  *samples = NULL;
  *n_samples = 0;
  *sample_rate = 0;

  if (len < WAV_RIFF_HEADER || memcmp(data, "RIFF", 4) != 0) {
    st = sw_error(SW_STATUS_FORMAT, "wav: not a RIFF file");
    goto out;
  }
  if (memcmp(data + 8, "WAVE", 4) != 0) {
    st = sw_error(SW_STATUS_FORMAT, "wav: RIFF file is not of type WAVE");
    goto out;
  }

  /* Invariant: pos <= len, so len - pos never wraps. */
  size_t pos = WAV_RIFF_HEADER;
  for (;;) {
    if (len - pos < WAV_CHUNK_HEADER) {
      st = sw_error(SW_STATUS_FORMAT, "wav: %s", have_fmt ? "no data chunk" : "no fmt chunk");
      goto out;
    }
    const uint8_t *id = data + pos;
    size_t size = rd_u32(data + pos + 4);
    size_t body = pos + WAV_CHUNK_HEADER;
    size_t avail = len - body;
    char name[5];
    chunk_name(id, name);

    if (memcmp(id, "data", 4) == 0) {
      if (!have_fmt) {
        st =
            sw_error(SW_STATUS_FORMAT, "wav: data chunk at offset %zu comes before fmt chunk", pos);
        goto out;
      }
      if (size > avail) {
        st = sw_error(SW_STATUS_FORMAT, "wav: data chunk declares %zu bytes, file has %zu", size,
                      avail);
        goto out;
      }
      st = mix_down(data + body, size, &fmt, samples, n_samples);
      if (st) goto out;
      *sample_rate = fmt.sample_rate;
      goto out; /* whatever follows the samples (LIST, id3, ...) is not needed */
    }

    if (size > avail) {
      st = sw_error(SW_STATUS_FORMAT,
                    "wav: chunk '%s' at offset %zu declares %zu bytes, file has %zu", name, pos,
                    size, avail);
      goto out;
    }
    if (memcmp(id, "fmt ", 4) == 0) {
      if (have_fmt) {
        st = sw_error(SW_STATUS_FORMAT, "wav: second fmt chunk at offset %zu", pos);
        goto out;
      }
      st = parse_fmt(data + body, size, &fmt);
      if (st) goto out;
      have_fmt = true;
    }
    /* Skip the body and its pad byte; a missing pad byte at the very end is tolerated. */
    pos = body + size;
    if ((size & 1) && pos < len) pos++;
  }

out:
  return st;
}
