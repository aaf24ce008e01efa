# Frozen into the ESP32-like QEMU build (tools/qemu_firmware.py, esp32=True): asyncio's
# Python package as the ESP32 port's own board manifest includes it
# (ports/esp32/boards/manifest.py includes "$(MPY_DIR)/extmod/asyncio"), from the
# MicroPython tree being built. Nothing else: the other modules the ESP32 firmware freezes
# (_boot, network modules, drivers) are not imported by the worker.
include("$(MPY_DIR)/extmod/asyncio")  # noqa: F821 (makemanifest.py provides include)
