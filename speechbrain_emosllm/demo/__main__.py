"""Runs the offline EmoSLLM demo: ``python -m speechbrain_emosllm.demo``.

See ``speechbrain_emosllm.demo.run`` for what it does.
"""

from speechbrain_emosllm.demo.run import main

main()
