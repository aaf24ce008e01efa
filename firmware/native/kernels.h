/*
 * Compute kernels of docs/kernels.md in portable C99, with no MicroPython dependency.
 *
 * The glue in msw_native.c checks argument types, typecodes and lengths; these functions
 * trust their inputs. Integer results are bit-exact with the pure-Python kernels: every
 * accumulator is wide enough for the largest input the glue lets through.
 */
#ifndef MSW_KERNELS_H
#define MSW_KERNELS_H

#include <stddef.h>
#include <stdint.h>

int64_t msw_dot_i8(const int8_t *a, const int8_t *b, size_t n);
int64_t msw_dot_i16(const int16_t *a, const int16_t *b, size_t n);
float msw_dot_f32(const float *a, const float *b, size_t n);

/* out[i*n + j] = sum over p of a[i*k + p] * b[p*n + j]; out holds m*n items. */
void msw_matmul_i8(const int8_t *a, const int8_t *b, size_t m, size_t k, size_t n, int32_t *out);
void msw_matmul_i16(const int16_t *a, const int16_t *b, size_t m, size_t k, size_t n,
    int64_t *out);
void msw_matmul_f32(const float *a, const float *b, size_t m, size_t k, size_t n, float *out);

/* Q13 fixed-point escape-time counts, row-major, w*h items. */
void msw_mandelbrot(int64_t x0, int64_t y0, int64_t step, size_t w, size_t h,
    uint32_t max_iter, uint16_t *out);

/* out holds n_x - n_taps + 1 items; n_taps >= 1, n_x >= n_taps, shift in 0..31. */
void msw_fir(const int16_t *x, size_t n_x, const int16_t *taps, size_t n_taps,
    unsigned shift, int16_t *out);

/* out holds n_x - n_k + 1 items. Returns 0, or -1 when a result does not fit int32. */
int msw_conv1d_i8(const int8_t *x, size_t n_x, const int8_t *k, size_t n_k, int32_t *out);
int msw_conv1d_i16(const int16_t *x, size_t n_x, const int16_t *k, size_t n_k, int32_t *out);

/* hidden is scratch of nh items; shifts in 0..31. */
void msw_mlp_int8(const int8_t *x, size_t n_in, const int8_t *w1, const int32_t *b1, size_t nh,
    const int8_t *w2, const int32_t *b2, size_t n_out, unsigned shift1, unsigned shift2,
    int8_t *hidden, int8_t *out);

/* leak_shift in 0..31; v_reset in int16 range. */
void msw_lif_step(const int16_t *v, const int16_t *i_in, size_t n, unsigned leak_shift,
    int64_t threshold, int16_t v_reset, int16_t *v_out, uint8_t *spikes);

#endif
