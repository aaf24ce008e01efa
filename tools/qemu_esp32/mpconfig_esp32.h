// Configuration of the ESP32-like QEMU build (tools/qemu_firmware.py, esp32=True), named
// by MP_CONFIGFILE: the qemu port's own configuration, with MICROPY_PY_ASYNCIO left to
// py/mpconfig.h's default for the port's ROM level (EXTRA_FEATURES, the ESP32's level too),
// which compiles the _asyncio C module (extmod/modasyncio.c) as the ESP32 firmware does.
// The qemu port turns it off; nothing else changes.
#include <mpconfigport.h>
#undef MICROPY_PY_ASYNCIO
