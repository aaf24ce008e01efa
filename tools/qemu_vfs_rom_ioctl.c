// vfs.rom_ioctl for MicroPython's ports/qemu firmware with a writable ROM partition that
// behaves as NOR flash does (the project's own file; tools/qemu_firmware.py builds the port
// with it in place of the port's vfs_rom_ioctl.c, which only reports the partitions).
//
// The partitions are the RAM ranges the build names with MICROPY_HW_ROMFS_PARTn_START and
// _SIZE. Commands, as extmod/vfs.h numbers them:
//   1 GET_NUMBER_OF_SEGMENTS        -> how many partitions
//   2 GET_SEGMENT id                -> a read-only memoryview of the partition
//   3 WRITE_PREPARE id [offset] len -> erases every 4 KB block that [offset, offset+len)
//                                      touches to 0xFF (whole blocks, as a NOR sector erase
//                                      does: bytes of a touched block outside the range are
//                                      lost too) and opens a write; returns the write unit
//   4 WRITE id offset buf           -> programs buf: each byte becomes old & new (a write can
//                                      only clear bits); offset and length must be multiples
//                                      of the write unit and lie in blocks erased since the
//                                      write was opened
//   5 WRITE_COMPLETE id             -> closes the write
//   6 GET_MIN_PREPARE id            -> the erase block (4 KB)
// Errors come back as a negative errno, as the port's ioctls return them: -EINVAL for a bad
// id, argument, range or alignment, -EPERM for a write to a block not erased in the open
// write (or with no write open).
//
// The sizes are the least convenient of the boards the project targets: a 4 KB erase
// block (the ESP32's SPI flash sector, which its partitions are erased in, and the
// RP2350's FLASH_SECTOR_SIZE) and a 256-byte write unit (the RP2350's flash page, the
// unit pico-sdk's flash_range_program programs).

#include <string.h>

#include "py/obj.h"
#include "py/objarray.h"
#include "py/mperrno.h"
#include "py/runtime.h"
#include "extmod/vfs.h"

#if MICROPY_VFS_ROM_IOCTL

#define MSW_ERASE_BLOCK (4096)
#define MSW_WRITE_UNIT (256)

#define MSW_BLOCKS(size) (((size) + MSW_ERASE_BLOCK - 1) / MSW_ERASE_BLOCK)

#if MICROPY_HW_ROMFS_ENABLE_PART0
static MP_DEFINE_MEMORYVIEW_OBJ(msw_rom0, 'B', 0, MICROPY_HW_ROMFS_PART0_SIZE,
    (void *)(MICROPY_HW_ROMFS_PART0_START));
static uint8_t msw_erased0[(MSW_BLOCKS(MICROPY_HW_ROMFS_PART0_SIZE) + 7) / 8];
#endif
#if MICROPY_HW_ROMFS_ENABLE_PART1
static MP_DEFINE_MEMORYVIEW_OBJ(msw_rom1, 'B', 0, MICROPY_HW_ROMFS_PART1_SIZE,
    (void *)(MICROPY_HW_ROMFS_PART1_START));
static uint8_t msw_erased1[(MSW_BLOCKS(MICROPY_HW_ROMFS_PART1_SIZE) + 7) / 8];
#endif

typedef struct {
    mp_obj_array_t *view;  // its items and len are the partition's start and size
    uint8_t *erased;  // one bit per block: erased since the open write began
    size_t erased_len;
    bool writing;
} msw_rom_t;

static msw_rom_t msw_roms[] = {
    #if MICROPY_HW_ROMFS_ENABLE_PART0
    {&msw_rom0, msw_erased0, sizeof(msw_erased0), false},
    #endif
    #if MICROPY_HW_ROMFS_ENABLE_PART1
    {&msw_rom1, msw_erased1, sizeof(msw_erased1), false},
    #endif
};

#define MSW_ERR(e) MP_OBJ_NEW_SMALL_INT(-(e))

static mp_obj_t msw_prepare(msw_rom_t *rom, mp_int_t offset, mp_int_t len) {
    size_t size = rom->view->len;
    if (offset < 0 || len < 0 || (size_t)offset > size || (size_t)len > size - offset) {
        return MSW_ERR(MP_EINVAL);
    }
    if (!rom->writing) {
        memset(rom->erased, 0, rom->erased_len);
        rom->writing = true;
    }
    if (len > 0) {
        size_t first = offset / MSW_ERASE_BLOCK;
        size_t end = MSW_BLOCKS((size_t)offset + len);
        uint8_t *base = rom->view->items;
        for (size_t block = first; block < end; ++block) {
            size_t at = block * MSW_ERASE_BLOCK;
            size_t n = size - at < MSW_ERASE_BLOCK ? size - at : MSW_ERASE_BLOCK;
            memset(base + at, 0xff, n);
            rom->erased[block / 8] |= 1 << (block % 8);
        }
    }
    return MP_OBJ_NEW_SMALL_INT(MSW_WRITE_UNIT);
}

static mp_obj_t msw_write(msw_rom_t *rom, mp_int_t offset, mp_obj_t data) {
    mp_buffer_info_t buf;
    mp_get_buffer_raise(data, &buf, MP_BUFFER_READ);
    size_t size = rom->view->len;
    if (offset < 0 || (size_t)offset > size || buf.len > size - offset
        || offset % MSW_WRITE_UNIT != 0 || buf.len % MSW_WRITE_UNIT != 0) {
        return MSW_ERR(MP_EINVAL);
    }
    if (!rom->writing) {
        return MSW_ERR(MP_EPERM);
    }
    if (buf.len == 0) {
        return MP_OBJ_NEW_SMALL_INT(0);
    }
    size_t last = (offset + buf.len - 1) / MSW_ERASE_BLOCK;
    for (size_t block = offset / MSW_ERASE_BLOCK; block <= last; ++block) {
        if (!(rom->erased[block / 8] & (1 << (block % 8)))) {
            return MSW_ERR(MP_EPERM);
        }
    }
    uint8_t *dst = (uint8_t *)rom->view->items + offset;
    const uint8_t *src = buf.buf;
    for (size_t i = 0; i < buf.len; ++i) {
        dst[i] &= src[i];
    }
    return MP_OBJ_NEW_SMALL_INT(0);
}

mp_obj_t mp_vfs_rom_ioctl(size_t n_args, const mp_obj_t *args) {
    mp_int_t cmd = mp_obj_get_int(args[0]);
    if (cmd == MP_VFS_ROM_IOCTL_GET_NUMBER_OF_SEGMENTS) {
        return MP_OBJ_NEW_SMALL_INT(MP_ARRAY_SIZE(msw_roms));
    }
    if (n_args < 2) {
        return MSW_ERR(MP_EINVAL);
    }
    mp_int_t id = mp_obj_get_int(args[1]);
    if (id < 0 || id >= (mp_int_t)MP_ARRAY_SIZE(msw_roms)) {
        return MSW_ERR(MP_EINVAL);
    }
    msw_rom_t *rom = &msw_roms[id];
    switch (cmd) {
        case MP_VFS_ROM_IOCTL_GET_SEGMENT:
            return MP_OBJ_FROM_PTR(rom->view);
        case MP_VFS_ROM_IOCTL_WRITE_PREPARE:
            if (n_args == 3) {
                return msw_prepare(rom, 0, mp_obj_get_int(args[2]));
            }
            if (n_args == 4) {
                return msw_prepare(rom, mp_obj_get_int(args[2]), mp_obj_get_int(args[3]));
            }
            return MSW_ERR(MP_EINVAL);
        case MP_VFS_ROM_IOCTL_WRITE:
            if (n_args != 4) {
                return MSW_ERR(MP_EINVAL);
            }
            return msw_write(rom, mp_obj_get_int(args[2]), args[3]);
        case MP_VFS_ROM_IOCTL_WRITE_COMPLETE:
            if (!rom->writing) {
                return MSW_ERR(MP_EPERM);
            }
            rom->writing = false;
            return MP_OBJ_NEW_SMALL_INT(0);
        case MP_VFS_ROM_IOCTL_GET_MIN_PREPARE:
            return MP_OBJ_NEW_SMALL_INT(MSW_ERASE_BLOCK);
        default:
            return MSW_ERR(MP_EINVAL);
    }
}

#endif // MICROPY_VFS_ROM_IOCTL
