/* CRC32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of TFRecord
 * frames. The SSE4.2 crc32 instruction when the CPU has it (three interleaved streams
 * would go faster still; one already outruns the page cache), slicing-by-8 elsewhere. */
#include <string.h>

#include "slipway/base.h"

static uint32_t table[8][256];
static int table_ready;

static void init_table(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++) table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
  __atomic_store_n(&table_ready, 1, __ATOMIC_RELEASE);
}

uint32_t sw_crc32c_portable(uint32_t crc, const void *data, size_t len) {
  if (!__atomic_load_n(&table_ready, __ATOMIC_ACQUIRE)) init_table();
  const uint8_t *p = data;
  crc = ~crc;
  while (len && ((uintptr_t)p & 7)) {
    crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
    len--;
  }
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    w ^= crc; /* little-endian */
    crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
          table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
          table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
    p += 8;
    len -= 8;
  }
  while (len--) crc = table[0][(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) static uint32_t crc32c_sse42(uint32_t crc, const void *data,
                                                                  size_t len) {
  const uint8_t *p = data;
  uint64_t c = ~crc;
  while (len && ((uintptr_t)p & 7)) {
    c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
    len--;
  }
  while (len >= 32) {
    uint64_t w[4];
    memcpy(w, p, 32);
    c = __builtin_ia32_crc32di(c, w[0]);
    c = __builtin_ia32_crc32di(c, w[1]);
    c = __builtin_ia32_crc32di(c, w[2]);
    c = __builtin_ia32_crc32di(c, w[3]);
    p += 32;
    len -= 32;
  }
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, p, 8);
    c = __builtin_ia32_crc32di(c, w);
    p += 8;
    len -= 8;
  }
  while (len--) c = __builtin_ia32_crc32qi((uint32_t)c, *p++);
  return ~(uint32_t)c;
}
#endif

bool sw_crc32c_hw(void) {
#if defined(__x86_64__)
  return __builtin_cpu_supports("sse4.2");
#else
  return false;
#endif
}

uint32_t sw_crc32c(uint32_t crc, const void *data, size_t len) {
#if defined(__x86_64__)
  static int hw = -1;
  if (hw < 0) hw = sw_crc32c_hw();
  if (hw) return crc32c_sse42(crc, data, len);
#endif
  return sw_crc32c_portable(crc, data, len);
}
