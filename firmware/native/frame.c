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

/* SHA-256 (FIPS 180-4) for the frame MAC: HMAC-SHA256 in place, no heap. */
static const uint32_t sha_k[64] = {
    0x428a2f98u, 0x71374491u, 0xb5c0fbcfu, 0xe9b5dba5u, 0x3956c25bu, 0x59f111f1u,
    0x923f82a4u, 0xab1c5ed5u, 0xd807aa98u, 0x12835b01u, 0x243185beu, 0x550c7dc3u,
    0x72be5d74u, 0x80deb1feu, 0x9bdc06a7u, 0xc19bf174u, 0xe49b69c1u, 0xefbe4786u,
    0x0fc19dc6u, 0x240ca1ccu, 0x2de92c6fu, 0x4a7484aau, 0x5cb0a9dcu, 0x76f988dau,
    0x983e5152u, 0xa831c66du, 0xb00327c8u, 0xbf597fc7u, 0xc6e00bf3u, 0xd5a79147u,
    0x06ca6351u, 0x14292967u, 0x27b70a85u, 0x2e1b2138u, 0x4d2c6dfcu, 0x53380d13u,
    0x650a7354u, 0x766a0abbu, 0x81c2c92eu, 0x92722c85u, 0xa2bfe8a1u, 0xa81a664bu,
    0xc24b8b70u, 0xc76c51a3u, 0xd192e819u, 0xd6990624u, 0xf40e3585u, 0x106aa070u,
    0x19a4c116u, 0x1e376c08u, 0x2748774cu, 0x34b0bcb5u, 0x391c0cb3u, 0x4ed8aa4au,
    0x5b9cca4fu, 0x682e6ff3u, 0x748f82eeu, 0x78a5636fu, 0x84c87814u, 0x8cc70208u,
    0x90befffau, 0xa4506cebu, 0xbef9a3f7u, 0xc67178f2u,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha_block(uint32_t h[8], const uint8_t *p) {
    uint32_t w[64];
    for (int i = 0; i < 16; i++) {
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16
            | (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    }
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    uint32_t a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g))
            + sha_k[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    h[0] += a;
    h[1] += b;
    h[2] += c;
    h[3] += d;
    h[4] += e;
    h[5] += f;
    h[6] += g;
    h[7] += k;
}

typedef struct {
    uint32_t h[8];
    uint8_t buf[64];
    size_t fill;
    uint64_t total;
} sha_t;

static void sha_init(sha_t *s) {
    static const uint32_t iv[8] = {
        0x6a09e667u, 0xbb67ae85u, 0x3c6ef372u, 0xa54ff53au,
        0x510e527fu, 0x9b05688cu, 0x1f83d9abu, 0x5be0cd19u,
    };
    for (int i = 0; i < 8; i++) {
        s->h[i] = iv[i];
    }
    s->fill = 0;
    s->total = 0;
}

static void sha_update(sha_t *s, const uint8_t *p, size_t n) {
    s->total += n;
    while (n) {
        size_t k = 64 - s->fill;
        if (k > n) {
            k = n;
        }
        for (size_t i = 0; i < k; i++) {
            s->buf[s->fill + i] = p[i];
        }
        s->fill += k;
        p += k;
        n -= k;
        if (s->fill == 64) {
            sha_block(s->h, s->buf);
            s->fill = 0;
        }
    }
}

static void sha_final(sha_t *s, uint8_t out[32]) {
    uint64_t bits = s->total * 8;
    uint8_t pad = 0x80;
    sha_update(s, &pad, 1);
    pad = 0;
    while (s->fill != 56) {
        sha_update(s, &pad, 1);
    }
    uint8_t len[8];
    for (int i = 0; i < 8; i++) {
        len[i] = (uint8_t)(bits >> (56 - 8 * i));
    }
    sha_update(s, len, 8);
    for (int i = 0; i < 8; i++) {
        out[4 * i] = (uint8_t)(s->h[i] >> 24);
        out[4 * i + 1] = (uint8_t)(s->h[i] >> 16);
        out[4 * i + 2] = (uint8_t)(s->h[i] >> 8);
        out[4 * i + 3] = (uint8_t)s->h[i];
    }
}

void msw_hmac_sha256(const uint8_t ipad[64], const uint8_t opad[64], const uint8_t *a,
                     size_t a_len, const uint8_t *b, size_t b_len, uint8_t out[32]) {
    sha_t s;
    uint8_t inner[32];
    sha_init(&s);
    sha_update(&s, ipad, 64);
    sha_update(&s, a, a_len);
    sha_update(&s, b, b_len);
    sha_final(&s, inner);
    sha_init(&s);
    sha_update(&s, opad, 64);
    sha_update(&s, inner, 32);
    sha_final(&s, out);
}
