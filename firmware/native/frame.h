/*
 * Frame-path helpers: CRC-32 (IEEE 802.3, as zlib.crc32) and COBS, in portable C99.
 */
#ifndef MSW_FRAME_H
#define MSW_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Continue a CRC-32 over data: msw_crc32(0, d, n) == zlib.crc32(d). */
uint32_t msw_crc32(uint32_t crc, const uint8_t *data, size_t len);

/* The largest encoding of len bytes (one code byte per started 254-byte run). */
size_t msw_cobs_encoded_max(size_t len);

/* Encode src into dst (msw_cobs_encoded_max(len) bytes); returns the encoded length.
 * No trailing 0x00 delimiter is written. */
size_t msw_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst);

/* Decode src into dst (at least len bytes). Returns the decoded length, or -1 when src
 * holds a zero byte or a block runs past its end. */
ptrdiff_t msw_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst);

#endif
