"""Build MicroPython dynamic native modules (.mpy v6.3) from relocatable ELF objects.

sdk: the pinned MicroPython sdist (headers, static qstrs, mp_fun_table layout).
mpyfile: the .mpy container (write and read back).
elflink: the ELF-to-.mpy linker for x64 and Thumb (armv6m, armv7m, armv7emsp).
"""
