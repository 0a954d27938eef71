"""llama-cpp-python's OpenAI-compatible server (`python -m llama_cpp.server`), safe on AMX CPUs.

Run it as `python -m tests.openai_server --model FILE.gguf --model_alias NAME --port N`; every
argument goes to `llama_cpp.server` unchanged. Some virtual machines advertise Intel AMX without
enabling it, and llama.cpp's AMX weight buffers then crash the process (SIGSEGV) on the first
request; this launcher loads the model with those buffers off when the embedded engine would
(`ollagraph.agents.engine.llama_setup.use_extra_buffers`), then runs the stock server.
"""

from __future__ import annotations

import runpy


def main() -> None:
    from ollagraph.agents.engine.llama_setup import model_params, use_extra_buffers

    with model_params(use_extra_buffers()):
        runpy.run_module("llama_cpp.server", run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
