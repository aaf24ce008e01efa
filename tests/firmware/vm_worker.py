# The worker.Worker that a VM script hands the firmware's worker.Session (alloc_vm.py,
# engine_script_vm.py): the key, HELLO and frame limit of the script's join, the worker's
# own FrameWriter, no kernel thread, and no collection of the session's own (heap_total 0),
# so that what a script measures or compares stays put. The tests copy it into the flash
# folder beside the firmware (vm_script's `modules`).
import engine
import frame


class Worker:
    heap_total = 0

    def __init__(self, hello, key, max_frame):
        self._hello = hello
        self.cfg = {"max_frame": max_frame, "key": key}
        self.stats = engine.Stats(0, None)
        self.thread = None

    def hello(self, kind):
        return self._hello

    def writer(self, cobs):
        return frame.FrameWriter(self.cfg["max_frame"], serial=cobs)

    def joined(self):
        pass
