/*
 * Compute kernels (see kernels.h and docs/kernels.md for the exact definitions).
 */
#include "kernels.h"

#define Q13_ONE (1 << 13)

static int16_t sat16(int64_t v) {
    return (int16_t)(v < -32768 ? -32768 : (v > 32767 ? 32767 : v));
}

int64_t msw_dot_i8(const int8_t *a, const int8_t *b, size_t n) {
    int64_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += (int32_t)a[i] * b[i];
    }
    return acc;
}

int64_t msw_dot_i16(const int16_t *a, const int16_t *b, size_t n) {
    int64_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        acc += (int32_t)a[i] * b[i];
    }
    return acc;
}

float msw_dot_f32(const float *a, const float *b, size_t n) {
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++) {
        acc += a[i] * b[i];
    }
    return acc;
}

/* The matmuls walk a row of a against consecutive rows of b (i-p-j order), so the inner
 * loop reads b and writes out sequentially. */
void msw_matmul_i8(const int8_t *a, const int8_t *b, size_t m, size_t k, size_t n, int32_t *out) {
    for (size_t i = 0; i < m; i++) {
        int32_t *row = out + i * n;
        for (size_t j = 0; j < n; j++) {
            row[j] = 0;
        }
        for (size_t p = 0; p < k; p++) {
            int32_t aip = a[i * k + p];
            const int8_t *brow = b + p * n;
            for (size_t j = 0; j < n; j++) {
                row[j] += aip * brow[j];
            }
        }
    }
}

void msw_matmul_i16(const int16_t *a, const int16_t *b, size_t m, size_t k, size_t n,
    int64_t *out) {
    for (size_t i = 0; i < m; i++) {
        int64_t *row = out + i * n;
        for (size_t j = 0; j < n; j++) {
            row[j] = 0;
        }
        for (size_t p = 0; p < k; p++) {
            int32_t aip = a[i * k + p];
            const int16_t *brow = b + p * n;
            for (size_t j = 0; j < n; j++) {
                row[j] += aip * brow[j];
            }
        }
    }
}

void msw_matmul_f32(const float *a, const float *b, size_t m, size_t k, size_t n, float *out) {
    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < n; j++) {
            float acc = 0.0f;
            for (size_t p = 0; p < k; p++) {
                acc += a[i * k + p] * b[p * n + j];
            }
            out[i * n + j] = acc;
        }
    }
}

/* After the first iteration z == c, so a c outside the +-2 box stops at the second bound
 * check: such points count min(1, max_iter) and the loop itself only ever sees values
 * that fit int32 (|z| <= 2**14 before each product). */
static uint16_t mandel_point(int64_t cr64, int64_t ci64, uint32_t max_iter) {
    const int64_t box = 2 * Q13_ONE;
    if (cr64 > box || cr64 < -box || ci64 > box || ci64 < -box) {
        return (uint16_t)(max_iter < 1 ? max_iter : 1);
    }
    int32_t cr = (int32_t)cr64;
    int32_t ci = (int32_t)ci64;
    int32_t zr = 0;
    int32_t zi = 0;
    uint32_t it = 0;
    while (it < max_iter) {
        if (zr > 2 * Q13_ONE || zr < -2 * Q13_ONE || zi > 2 * Q13_ONE || zi < -2 * Q13_ONE) {
            break;
        }
        int32_t zr2 = (zr * zr) >> 13;
        int32_t zi2 = (zi * zi) >> 13;
        if (zr2 + zi2 > 4 * Q13_ONE) {
            break;
        }
        zi = ((zr * zi) >> 12) + ci;
        zr = zr2 - zi2 + cr;
        it++;
    }
    return (uint16_t)it;
}

void msw_mandelbrot(int64_t x0, int64_t y0, int64_t step, size_t w, size_t h,
    uint32_t max_iter, uint16_t *out) {
    for (size_t py = 0; py < h; py++) {
        int64_t ci = y0 + (int64_t)py * step;
        int64_t cr = x0;
        for (size_t px = 0; px < w; px++) {
            *out++ = mandel_point(cr, ci, max_iter);
            cr += step;
        }
    }
}

void msw_fir(const int16_t *x, size_t n_x, const int16_t *taps, size_t n_taps,
    unsigned shift, int16_t *out) {
    int64_t rnd = shift > 0 ? (int64_t)1 << (shift - 1) : 0;
    size_t n_out = n_x - n_taps + 1;
    for (size_t i = 0; i < n_out; i++) {
        const int16_t *xi = x + i + n_taps - 1;
        int64_t acc = rnd;
        for (size_t j = 0; j < n_taps; j++) {
            acc += (int32_t)taps[j] * *(xi - j);
        }
        out[i] = sat16(acc >> shift);
    }
}

int msw_conv1d_i8(const int8_t *x, size_t n_x, const int8_t *k, size_t n_k, int32_t *out) {
    size_t n_out = n_x - n_k + 1;
    for (size_t i = 0; i < n_out; i++) {
        int64_t acc = 0;
        for (size_t j = 0; j < n_k; j++) {
            acc += (int32_t)k[j] * x[i + j];
        }
        if (acc > INT32_MAX || acc < INT32_MIN) {
            return -1;
        }
        out[i] = (int32_t)acc;
    }
    return 0;
}

int msw_conv1d_i16(const int16_t *x, size_t n_x, const int16_t *k, size_t n_k, int32_t *out) {
    size_t n_out = n_x - n_k + 1;
    for (size_t i = 0; i < n_out; i++) {
        int64_t acc = 0;
        for (size_t j = 0; j < n_k; j++) {
            acc += (int32_t)k[j] * x[i + j];
        }
        if (acc > INT32_MAX || acc < INT32_MIN) {
            return -1;
        }
        out[i] = (int32_t)acc;
    }
    return 0;
}

static int64_t dot_i8_64(const int8_t *w, const int8_t *v, size_t n, int64_t acc) {
    for (size_t i = 0; i < n; i++) {
        acc += (int32_t)w[i] * v[i];
    }
    return acc;
}

void msw_mlp_int8(const int8_t *x, size_t n_in, const int8_t *w1, const int32_t *b1, size_t nh,
    const int8_t *w2, const int32_t *b2, size_t n_out, unsigned shift1, unsigned shift2,
    int8_t *hidden, int8_t *out) {
    for (size_t j = 0; j < nh; j++) {
        int64_t acc = dot_i8_64(w1 + j * n_in, x, n_in, b1[j]) >> shift1;
        hidden[j] = (int8_t)(acc < 0 ? 0 : (acc > 127 ? 127 : acc));
    }
    for (size_t o = 0; o < n_out; o++) {
        int64_t acc = dot_i8_64(w2 + o * nh, hidden, nh, b2[o]) >> shift2;
        out[o] = (int8_t)(acc < -128 ? -128 : (acc > 127 ? 127 : acc));
    }
}

void msw_lif_step(const int16_t *v, const int16_t *i_in, size_t n, unsigned leak_shift,
    int64_t threshold, int16_t v_reset, int16_t *v_out, uint8_t *spikes) {
    for (size_t i = 0; i < n; i++) {
        int32_t vi = v[i];
        int16_t u = sat16((int64_t)vi - (vi >> leak_shift) + i_in[i]);
        if (u >= threshold) {
            spikes[i] = 1;
            u = v_reset;
        } else {
            spikes[i] = 0;
        }
        v_out[i] = u;
    }
}
