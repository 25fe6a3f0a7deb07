"""Runs in vLLM's environment, not the project's (so: the standard library only), as
`python vllm_launch.py ARGS...`: vLLM's OpenAI-compatible server with ARGS, which also ends
itself and its whole process group when the process that started it goes away, however
that one ended (killed, crashed), so that no server is left holding gigabytes of memory.

`vllm serve` is not used: the CPU build looks up package metadata under another name and fails.
"""

import os
import runpy
import signal
import sys
import threading
import time

SERVER_MODULE = "vllm.entrypoints.openai.api_server"


def end_with_parent(parent: int) -> None:
    while os.getppid() == parent:
        time.sleep(1)
    os.killpg(os.getpgid(0), signal.SIGTERM)


# The guard matters: vLLM's workers are spawned, and a spawned child imports the main module.
if __name__ == "__main__":
    threading.Thread(target=end_with_parent, args=(os.getppid(),), daemon=True).start()
    sys.argv = [SERVER_MODULE, *sys.argv[1:]]
    runpy.run_module(SERVER_MODULE, run_name="__main__", alter_sys=True)
