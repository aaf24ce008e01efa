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

/* HMAC-SHA256 of a || b, its key given as the two padded blocks (key ^ 0x36.., key ^
 * 0x5c..): out = SHA256(opad || SHA256(ipad || a || b)). No heap (the frame MAC). */
void msw_hmac_sha256(const uint8_t ipad[64], const uint8_t opad[64], const uint8_t *a,
                     size_t a_len, const uint8_t *b, size_t b_len, uint8_t out[32]);

#endif
