"""EmoSLLM for SpeechBrain: speech emotion recognition with a speech LLM.

Authors
 * speechbrain-emosllm contributors 2026
"""

from speechbrain_emosllm.loss_schedule import LossWeightSchedule
from speechbrain_emosllm.metrics import EmotionMetrics
from speechbrain_emosllm.prompts import PromptBuilder
from speechbrain_emosllm.qpmapper import QPMapper
from speechbrain_emosllm.speech_llm import SpeechLLM

__all__ = [
    "EmotionMetrics",
    "LossWeightSchedule",
    "PromptBuilder",
    "QPMapper",
    "SpeechLLM",
]
