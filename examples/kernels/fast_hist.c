/*
 * fast_hist: the native version of histogram.py's kernel (same name, same arguments,
 * same result: an array('I') of `bins` counts). Build it with
 *     microswarm native build examples/kernels/fast_hist.c --arch x64
 * The node checks the declared argument kinds before either version runs.
 */
#include "py/dynruntime.h"

/* Looked up once by mpy_init. Global, not static: module data is reached through the GOT. */
mp_obj_t hist_array_type;

static mp_obj_t histogram(mp_obj_t data_obj, mp_obj_t bins_obj) {
    mp_buffer_info_t data;
    mp_get_buffer_raise(data_obj, &data, MP_BUFFER_READ);
    mp_int_t bins = mp_obj_get_int(bins_obj);
    if (bins < 1 || bins > 256) {
        mp_raise_ValueError("bins must be 1..256");
    }
    uint32_t *counts = m_malloc(bins * sizeof(uint32_t));
    for (mp_int_t i = 0; i < bins; i++) {
        counts[i] = 0;
    }
    const uint8_t *bytes = data.buf;
    for (size_t i = 0; i < data.len; i++) {
        counts[((uint32_t)bytes[i] * (uint32_t)bins) >> 8]++;
    }
    mp_obj_t args[2] = {
        MP_OBJ_NEW_QSTR(MP_QSTR_I),
        mp_obj_new_bytearray_by_ref(bins * sizeof(uint32_t), counts),
    };
    mp_obj_t result = mp_call_function_n_kw(hist_array_type, 2, 0, args);  /* copies */
    m_free(counts);
    return result;
}
static MP_DEFINE_CONST_FUN_OBJ_2(histogram_obj, histogram);

mp_obj_t mpy_init(mp_obj_fun_bc_t *self, size_t n_args, size_t n_kw, mp_obj_t *args) {
    MP_DYNRUNTIME_INIT_ENTRY
    mp_obj_t array_mod = mp_import_name(MP_QSTR_array, mp_const_none, MP_OBJ_NEW_SMALL_INT(0));
    hist_array_type = mp_load_attr(array_mod, MP_QSTR_array);
    mp_store_global(MP_QSTR_histogram, MP_OBJ_FROM_PTR(&histogram_obj));
    MP_DYNRUNTIME_INIT_EXIT
}
