/*
 * msw_native: MicroPython dynamic native module glue for kernels.c and frame.c.
 *
 * Every function checks its arguments the way firmware/kernels.py does (an array of the
 * wrong type -> TypeError, a wrong typecode, length or range -> ValueError), then calls a
 * pure C core. Results are built at their final size; scratch memory is freed at once.
 */
#include "py/dynruntime.h"

#include "frame.h"
#include "kernels.h"

#ifndef MSW_ARCH
#error "build with -DMSW_ARCH=\"<mpy arch name>\""
#endif

/* Looked up once by mpy_init. Global, not static: the module's bss is reached through the
 * GOT, never PC-relative. */
mp_obj_t msw_array_type;
mp_obj_t msw_int_type;

typedef struct {
    void *items;
    size_t len;
    char code;
} typed_t;

static size_t item_size(char code) {
    switch (code) {
        case 'b': case 'B': return 1;
        case 'h': case 'H': return 2;
        case 'i': case 'I': case 'f': return 4;
        default: return 8;
    }
}

/* An array.array whose typecode is one of `codes`. */
static typed_t typed_arg(mp_obj_t obj, const char *codes) {
    if (MP_OBJ_FROM_PTR(mp_obj_get_type(obj)) != msw_array_type) {
        mp_raise_TypeError("expected an array.array");
    }
    mp_buffer_info_t info;
    mp_get_buffer_raise(obj, &info, MP_BUFFER_READ);
    typed_t t = { info.buf, 0, (char)info.typecode };
    for (const char *c = codes; *c; c++) {
        if (*c == t.code) {
            t.len = info.len / item_size(t.code);
            return t;
        }
    }
    mp_raise_ValueError("array has the wrong typecode");
}

static mp_int_t int_arg(mp_obj_t obj, mp_int_t lo, mp_int_t hi) {
    if (!mp_obj_is_small_int(obj) && MP_OBJ_FROM_PTR(mp_obj_get_type(obj)) != msw_int_type) {
        mp_raise_TypeError("expected an int");
    }
    mp_int_t v = mp_obj_get_int(obj);
    if (v < lo || v > hi) {
        mp_raise_ValueError("int argument out of range");
    }
    return v;
}

static size_t count_mul(size_t a, size_t b) {
    if (a != 0 && b > ((size_t)-1 / 8) / a) {
        mp_raise_ValueError("result too large");
    }
    return a * b;
}

/* array.array(code, bytes of data): the array copies them. */
static mp_obj_t make_array(qstr code, const void *data, size_t nbytes) {
    mp_obj_t args[2] = {
        MP_OBJ_NEW_QSTR(code),
        mp_obj_new_bytearray_by_ref(nbytes, (void *)data),
    };
    return mp_call_function_n_kw(msw_array_type, 2, 0, args);
}

static mp_obj_t int64_obj(int64_t v) {
    return mp_binary_get_val_array('q', &v, 0);
}

static mp_obj_t dot(mp_obj_t a_in, mp_obj_t b_in) {
    typed_t a = typed_arg(a_in, "bhf");
    typed_t b = typed_arg(b_in, "bhf");
    if (a.code != b.code) {
        mp_raise_ValueError("a and b must have the same typecode");
    }
    if (a.len != b.len) {
        mp_raise_ValueError("a and b must have the same length");
    }
    if (a.code == 'b') {
        return int64_obj(msw_dot_i8(a.items, b.items, a.len));
    }
    if (a.code == 'h') {
        return int64_obj(msw_dot_i16(a.items, b.items, a.len));
    }
    return mp_obj_new_float(msw_dot_f32(a.items, b.items, a.len));
}
static MP_DEFINE_CONST_FUN_OBJ_2(dot_obj, dot);

static mp_obj_t matmul(size_t n_args, const mp_obj_t *args) {
    typed_t a = typed_arg(args[0], "bhf");
    typed_t b = typed_arg(args[1], "bhf");
    if (a.code != b.code) {
        mp_raise_ValueError("a and b must have the same typecode");
    }
    size_t m = int_arg(args[2], 0, MP_INT_MAX);
    size_t k = int_arg(args[3], 0, MP_INT_MAX);
    size_t n = int_arg(args[4], 0, MP_INT_MAX);
    if (a.len != count_mul(m, k) || b.len != count_mul(k, n)) {
        mp_raise_ValueError("a must hold m*k and b k*n items");
    }
    if (a.code == 'b' && k > 0x7FFFFFFF / 16384) {
        mp_raise_ValueError("k too large for an int32 result");
    }
    size_t items = count_mul(m, n);
    void *out = m_malloc(items * (a.code == 'h' ? 8 : 4));
    mp_obj_t result;
    if (a.code == 'b') {
        msw_matmul_i8(a.items, b.items, m, k, n, out);
        result = make_array(MP_QSTR_i, out, items * 4);
    } else if (a.code == 'h') {
        msw_matmul_i16(a.items, b.items, m, k, n, out);
        result = make_array(MP_QSTR_q, out, items * 8);
    } else {
        msw_matmul_f32(a.items, b.items, m, k, n, out);
        result = make_array(MP_QSTR_f, out, items * 4);
    }
    m_free(out);
    return result;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(matmul_obj, 5, 5, matmul);

static mp_obj_t mandelbrot(size_t n_args, const mp_obj_t *args) {
    /* Q13 coordinates beyond +-2**31 lie far outside the set; the bound keeps the C
     * arithmetic exact on every port. */
    const mp_int_t lim = 0x7FFFFFFF;
    mp_int_t x0 = int_arg(args[0], -lim, lim);
    mp_int_t y0 = int_arg(args[1], -lim, lim);
    mp_int_t step = int_arg(args[2], -lim, lim);
    size_t w = int_arg(args[3], 0, MP_INT_MAX);
    size_t h = int_arg(args[4], 0, MP_INT_MAX);
    uint32_t max_iter = int_arg(args[5], 0, 65535);
    size_t items = count_mul(w, h);
    uint16_t *out = m_malloc(items * 2);
    msw_mandelbrot(x0, y0, step, w, h, max_iter, out);
    mp_obj_t result = make_array(MP_QSTR_H, out, items * 2);
    m_free(out);
    return result;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(mandelbrot_obj, 6, 6, mandelbrot);

static mp_obj_t fir(mp_obj_t x_in, mp_obj_t taps_in, mp_obj_t shift_in) {
    typed_t x = typed_arg(x_in, "h");
    typed_t taps = typed_arg(taps_in, "h");
    unsigned shift = int_arg(shift_in, 0, 31);
    if (taps.len == 0) {
        mp_raise_ValueError("taps must not be empty");
    }
    size_t n_out = x.len >= taps.len ? x.len - taps.len + 1 : 0;
    int16_t *out = m_malloc(n_out * 2);
    if (n_out) {
        msw_fir(x.items, x.len, taps.items, taps.len, shift, out);
    }
    mp_obj_t result = make_array(MP_QSTR_h, out, n_out * 2);
    m_free(out);
    return result;
}
static MP_DEFINE_CONST_FUN_OBJ_3(fir_obj, fir);

static mp_obj_t conv1d(mp_obj_t x_in, mp_obj_t kernel_in) {
    typed_t x = typed_arg(x_in, "bh");
    typed_t kernel = typed_arg(kernel_in, "bh");
    if (x.code != kernel.code) {
        mp_raise_ValueError("x and kernel must have the same typecode");
    }
    if (kernel.len == 0) {
        mp_raise_ValueError("kernel must not be empty");
    }
    size_t n_out = x.len >= kernel.len ? x.len - kernel.len + 1 : 0;
    int32_t *out = m_malloc(n_out * 4);
    int status = 0;
    if (n_out && x.code == 'b') {
        status = msw_conv1d_i8(x.items, x.len, kernel.items, kernel.len, out);
    } else if (n_out) {
        status = msw_conv1d_i16(x.items, x.len, kernel.items, kernel.len, out);
    }
    if (status != 0) {
        m_free(out);
        mp_raise_ValueError("conv1d result does not fit int32");
    }
    mp_obj_t result = make_array(MP_QSTR_i, out, n_out * 4);
    m_free(out);
    return result;
}
static MP_DEFINE_CONST_FUN_OBJ_2(conv1d_obj, conv1d);

static mp_obj_t mlp_int8(size_t n_args, const mp_obj_t *args) {
    typed_t x = typed_arg(args[0], "b");
    typed_t w1 = typed_arg(args[1], "b");
    typed_t b1 = typed_arg(args[2], "i");
    typed_t w2 = typed_arg(args[3], "b");
    typed_t b2 = typed_arg(args[4], "i");
    unsigned shift1 = int_arg(args[5], 0, 31);
    unsigned shift2 = int_arg(args[6], 0, 31);
    if (w1.len != count_mul(b1.len, x.len) || w2.len != count_mul(b2.len, b1.len)) {
        mp_raise_ValueError("w1 must hold len(b1)*len(x) and w2 len(b2)*len(b1) items");
    }
    int8_t *scratch = m_malloc(b1.len + b2.len);
    msw_mlp_int8(x.items, x.len, w1.items, b1.items, b1.len, w2.items, b2.items, b2.len,
        shift1, shift2, scratch, scratch + b1.len);
    mp_obj_t result = make_array(MP_QSTR_b, scratch + b1.len, b2.len);
    m_free(scratch);
    return result;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(mlp_int8_obj, 7, 7, mlp_int8);

static mp_obj_t lif_step(size_t n_args, const mp_obj_t *args) {
    typed_t v = typed_arg(args[0], "h");
    typed_t i_in = typed_arg(args[1], "h");
    unsigned leak_shift = int_arg(args[2], 0, 31);
    mp_int_t threshold = int_arg(args[3], MP_INT_MIN, MP_INT_MAX);
    int16_t v_reset = int_arg(args[4], -32768, 32767);
    if (v.len != i_in.len) {
        mp_raise_ValueError("v and i_in must have the same length");
    }
    uint8_t *scratch = m_malloc(v.len * 3);
    int16_t *v_out = (int16_t *)scratch;
    uint8_t *spikes = scratch + v.len * 2;
    msw_lif_step(v.items, i_in.items, v.len, leak_shift, threshold, v_reset, v_out, spikes);
    mp_obj_t pair[2] = {
        make_array(MP_QSTR_h, v_out, v.len * 2),
        make_array(MP_QSTR_B, spikes, v.len),
    };
    m_free(scratch);
    return mp_obj_new_list(2, pair);
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(lif_step_obj, 5, 5, lif_step);

static mp_obj_t crc32(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t data;
    mp_get_buffer_raise(args[0], &data, MP_BUFFER_READ);
    uint32_t crc = n_args > 1 ? (uint32_t)mp_obj_get_int_truncated(args[1]) : 0;
    return mp_obj_new_int_from_uint(msw_crc32(crc, data.buf, data.len));
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(crc32_obj, 1, 2, crc32);

static mp_obj_t cobs_encode(mp_obj_t data_in) {
    mp_buffer_info_t data;
    mp_get_buffer_raise(data_in, &data, MP_BUFFER_READ);
    uint8_t *out = m_malloc(msw_cobs_encoded_max(data.len));
    size_t n = msw_cobs_encode(data.buf, data.len, out);
    mp_obj_t result = mp_obj_new_bytes(out, n);
    m_free(out);
    return result;
}
static MP_DEFINE_CONST_FUN_OBJ_1(cobs_encode_obj, cobs_encode);

static mp_obj_t cobs_decode(mp_obj_t data_in) {
    mp_buffer_info_t data;
    mp_get_buffer_raise(data_in, &data, MP_BUFFER_READ);
    if (data.len == 0) {
        mp_raise_ValueError("empty COBS frame");
    }
    uint8_t *out = m_malloc(data.len);
    ptrdiff_t n = msw_cobs_decode(data.buf, data.len, out);
    if (n < 0) {
        m_free(out);
        mp_raise_ValueError("malformed COBS block");
    }
    mp_obj_t result = mp_obj_new_bytes(out, (size_t)n);
    m_free(out);
    return result;
}
static MP_DEFINE_CONST_FUN_OBJ_1(cobs_decode_obj, cobs_decode);

/* mac8(ipad, opad, a, b, out, offset): the first 8 bytes of HMAC-SHA256(a || b) under the
 * key whose padded blocks are ipad and opad, written to out[offset:offset + 8]. */
static mp_obj_t mac8(size_t n_args, const mp_obj_t *args) {
    mp_buffer_info_t ipad, opad, a, b, out;
    mp_get_buffer_raise(args[0], &ipad, MP_BUFFER_READ);
    mp_get_buffer_raise(args[1], &opad, MP_BUFFER_READ);
    mp_get_buffer_raise(args[2], &a, MP_BUFFER_READ);
    mp_get_buffer_raise(args[3], &b, MP_BUFFER_READ);
    mp_get_buffer_raise(args[4], &out, MP_BUFFER_WRITE);
    mp_int_t off = mp_obj_get_int(args[5]);
    if (ipad.len != 64 || opad.len != 64 || off < 0 || (size_t)off + 8 > out.len) {
        mp_raise_ValueError("pads must be 64 bytes and out must hold 8 at offset");
    }
    uint8_t tag[32];
    msw_hmac_sha256(ipad.buf, opad.buf, a.buf, a.len, b.buf, b.len, tag);
    uint8_t *dst = (uint8_t *)out.buf + off;
    for (int i = 0; i < 8; i++) {
        dst[i] = tag[i];
    }
    return mp_const_none;
}
static MP_DEFINE_CONST_FUN_OBJ_VAR_BETWEEN(mac8_obj, 6, 6, mac8);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY

    mp_obj_t array_mod = mp_import_name(MP_QSTR_array, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
    msw_array_type = mp_load_attr(array_mod, MP_QSTR_array);
    msw_int_type = MP_OBJ_FROM_PTR(&mp_type_int);

    mp_store_global(MP_QSTR_ARCH, mp_obj_new_str(MSW_ARCH, sizeof(MSW_ARCH) - 1));
    mp_store_global(MP_QSTR_dot, MP_OBJ_FROM_PTR(&dot_obj));
    mp_store_global(MP_QSTR_matmul, MP_OBJ_FROM_PTR(&matmul_obj));
    mp_store_global(MP_QSTR_mandelbrot, MP_OBJ_FROM_PTR(&mandelbrot_obj));
    mp_store_global(MP_QSTR_fir, MP_OBJ_FROM_PTR(&fir_obj));
    mp_store_global(MP_QSTR_conv1d, MP_OBJ_FROM_PTR(&conv1d_obj));
    mp_store_global(MP_QSTR_mlp_int8, MP_OBJ_FROM_PTR(&mlp_int8_obj));
    mp_store_global(MP_QSTR_lif_step, MP_OBJ_FROM_PTR(&lif_step_obj));
    mp_store_global(MP_QSTR_crc32, MP_OBJ_FROM_PTR(&crc32_obj));
    mp_store_global(MP_QSTR_cobs_encode, MP_OBJ_FROM_PTR(&cobs_encode_obj));
    mp_store_global(MP_QSTR_cobs_decode, MP_OBJ_FROM_PTR(&cobs_decode_obj));
    mp_store_global(MP_QSTR_mac8, MP_OBJ_FROM_PTR(&mac8_obj));

    MP_DYNRUNTIME_INIT_EXIT
}
