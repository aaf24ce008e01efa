/*
 * CRC-32 and COBS for the frame path (see frame.h).
 */
#include "frame.h"

/* CRC-32 of each nibble value under the reflected polynomial 0xEDB88320: 64 bytes of
 * rodata, two lookups per byte. */
static const uint32_t crc_nibble[16] = {
    0x00000000u, 0x1DB71064u, 0x3B6E20C8u, 0x26D930ACu,
    0x76DC4190u, 0x6B6B51F4u, 0x4DB26158u, 0x5005713Cu,
    0xEDB88320u, 0xF00F9344u, 0xD6D6A3E8u, 0xCB61B38Cu,
    0x9B64C2B0u, 0x86D3D2D4u, 0xA00AE278u, 0xBDBDF21Cu,
};

uint32_t msw_crc32(uint32_t crc, const uint8_t *data, size_t len) {
    crc = ~crc;
    for (size_t i = 0; i < len; i++) {
        crc ^= data[i];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0F];
        crc = (crc >> 4) ^ crc_nibble[crc & 0x0F];
    }
    return ~crc;
}

size_t msw_cobs_encoded_max(size_t len) {
    return len + len / 254 + 1;
}

size_t msw_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst) {
    size_t code_at = 0;
    size_t out = 1;
    uint8_t code = 1;
    /* A block closed by a full 254-byte run implies no zero, so the final block is
     * written only if it holds data or the last block ended on a zero. */
    int need_final = 1;
    for (size_t i = 0; i < len; i++) {
        if (src[i] == 0) {
            dst[code_at] = code;
            code_at = out++;
            code = 1;
            need_final = 1;
        } else {
            dst[out++] = src[i];
            code++;
            need_final = 1;
            if (code == 0xFF) {
                dst[code_at] = code;
                code_at = out++;
                code = 1;
                need_final = 0;
            }
        }
    }
    if (need_final) {
        dst[code_at] = code;
        return out;
    }
    return out - 1;
}

ptrdiff_t msw_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst) {
    size_t in = 0;
    size_t out = 0;
    while (in < len) {
        uint8_t code = src[in++];
        if (code == 0) {
            return -1;
        }
        size_t run = (size_t)code - 1;
        if (run > len - in) {
            return -1;
        }
        for (size_t j = 0; j < run; j++) {
            uint8_t b = src[in++];
            if (b == 0) {
                return -1;
            }
            dst[out++] = b;
        }
        if (code != 0xFF && in < len) {
            dst[out++] = 0;
        }
    }
    return (ptrdiff_t)out;
}
