"""Prompt bank, answer format and chat-template tokenisation for EmoSLLM.

The user turn of every example reads ``<instruction> Here are some audio
tokens:`` followed by the audio embeddings; the assistant answers in a fixed
format (``| ASR: <transcript> | Emotion: <label>`` for the joint task). The
pieces of an answer are tokenised one by one so that a prefix built at
inference (e.g. ``| ASR: <transcript> | Emotion:``) has exactly the token ids
it had in training.

Authors
 * speechbrain-emosllm contributors 2026
"""

import re

from speechbrain_emosllm.modes import get_mode

AUDIO_CUE = "Here are some audio tokens:"
ASR_TAG = "| ASR:"
EMOTION_TAG = "| Emotion:"

# Span types of answer tokens; prompt tokens are IGNORE (no loss).
IGNORE, MARKUP, TRANSCRIPT, EMOTION = -1, 0, 1, 2

ASR_PROMPTS = [
    "Transcribe the speech.",
    "Write down what the speaker says.",
    "Please transcribe the following recording.",
    "What is being said in this audio?",
    "Convert the spoken words into text.",
    "Give the transcript of this utterance.",
    "Listen to the audio and write out its words.",
    "Provide a verbatim transcription of the speech.",
    "Turn this speech into written text.",
    "Report exactly what is said.",
    "Transcribe this clip word for word.",
    "Produce the text of the spoken utterance.",
    "Write the words you hear.",
    "Generate a transcript for the audio below.",
    "Recognise the speech and output its text.",
    "What words does the speaker say?",
    "Type out the content of this recording.",
    "Perform speech recognition on this audio.",
    "Transcribe the utterance into English text.",
    "Decode the spoken content into words.",
    "Listen carefully and transcribe.",
]

SER_PROMPTS = [
    "Which emotion does the speaker express? Choose from: {emotions}.",
    "Classify the emotion of this speech as one of {emotions}.",
    "Identify the speaker's emotion. Options: {emotions}.",
    "What is the emotional state of the speaker ({emotions})?",
    "Recognise the emotion in the voice. Pick one of: {emotions}.",
    "How does the speaker feel? Answer with one of {emotions}.",
    "Label the emotion of the utterance ({emotions}).",
    "Determine the emotion conveyed in this recording: {emotions}.",
    "Select the emotion that best fits the speech: {emotions}.",
    "Detect the emotion of the speaker among {emotions}.",
    "Tell me the speaker's emotion; choices are {emotions}.",
    "Which of these emotions is expressed: {emotions}?",
    "Categorise the speaker's feeling as {emotions}.",
    "Give the emotion label for this audio ({emotions}).",
    "Listen and name the emotion. Possible answers: {emotions}.",
    "Predict the emotion of the speech from: {emotions}.",
    "What emotion can you hear? Use one of {emotions}.",
    "Assign one emotion class ({emotions}) to this utterance.",
    "Infer the emotion of the speaker. Candidates: {emotions}.",
    "Decide which emotion the voice shows: {emotions}.",
    "Name the speaker's emotion, choosing among {emotions}.",
]

JOINT_PROMPTS = [
    "Transcribe the speech, then give the speaker's emotion ({emotions}).",
    "Write what is said and which emotion is expressed. Emotions: {emotions}.",
    "First transcribe the audio, then classify its emotion as one of "
    "{emotions}.",
    "Give the transcript and the emotion ({emotions}) of this utterance.",
    "What does the speaker say, and how do they feel? Options: {emotions}.",
    "Recognise the words and the emotion ({emotions}) in this recording.",
    "Provide the transcription followed by the emotion label from {emotions}.",
    "Transcribe this clip and label its emotion: {emotions}.",
    "Output the spoken text, then the emotion among {emotions}.",
    "Listen, transcribe, and identify the emotion ({emotions}).",
    "Report the words and the emotion of the speaker; emotions are {emotions}.",
    "Do speech recognition and emotion recognition ({emotions}).",
    "Write the transcript, then choose the emotion from {emotions}.",
    "Tell me what is said and the emotion conveyed ({emotions}).",
    "Give the text of the speech and its emotion class: {emotions}.",
    "Transcribe the utterance and decide which emotion it shows: {emotions}.",
    "What are the words, and which emotion ({emotions}) is expressed?",
    "Produce a transcript and an emotion label ({emotions}).",
    "Write down the speech and name the emotion among {emotions}.",
    "Transcribe the recording, then pick the emotion: {emotions}.",
    "Recognise the transcript first and the emotion second ({emotions}).",
]

HINT_TEMPLATE = ' The transcript of the audio is: "{transcript}".'

PROMPTS = {"asr": ASR_PROMPTS, "ser": SER_PROMPTS, "joint": JOINT_PROMPTS}


def format_answer(task, transcript=None, emotion=None):
    """Returns the answer pieces of a task as (text, span type) pairs.

    Arguments
    ---------
    task : str
        ``"asr"``, ``"ser"`` or ``"joint"``.
    transcript : str, optional
        Reference transcript (asr, joint).
    emotion : str, optional
        Emotion label (ser, joint).

    Returns
    -------
    list of (str, int)
        Pieces whose concatenation is the answer text.

    Example
    -------
    >>> pieces = format_answer("joint", "hello there", "Happy")
    >>> "".join(text for text, _ in pieces)
    '| ASR: hello there | Emotion: Happy'
    """
    pieces = []
    if task in ("asr", "joint"):
        pieces += [(ASR_TAG, MARKUP), (" " + transcript.strip(), TRANSCRIPT)]
    if task in ("ser", "joint"):
        emotion_tag = EMOTION_TAG if not pieces else " " + EMOTION_TAG
        pieces += [(emotion_tag, MARKUP), (" " + emotion, EMOTION)]
    if not pieces:
        raise ValueError(f"Unknown task '{task}': use asr, ser or joint.")
    return pieces


def parse_answer(text, labels):
    """Parses a free-form answer into (transcript, emotion).

    The emotion is None when the answer names no valid label (an invalid
    answer); the transcript is None when the answer has no ASR field.

    Arguments
    ---------
    text : str
        Generated answer.
    labels : list of str
        Valid emotion labels (matched case-insensitively).

    Returns
    -------
    tuple
        (transcript or None, label or None)

    Example
    -------
    >>> parse_answer("| ASR: I see | Emotion: sad.", ["Happy", "Sad"])
    ('I see', 'Sad')
    >>> parse_answer("| ASR: what", ["Happy", "Sad"])
    ('what', None)
    """
    transcript = None
    asr = re.search(r"\|\s*ASR:(.*?)(?:\|\s*Emotion:|$)", text, re.S)
    if asr:
        transcript = asr.group(1).strip()
    emotion = None
    found = re.search(r"\|\s*Emotion:\s*([A-Za-z]+)", text)
    if found:
        by_name = {label.lower(): label for label in labels}
        emotion = by_name.get(found.group(1).lower())
    return transcript, emotion


class PromptBuilder:
    r"""Turns prompts and answers into token ids for a chat LLM.

    Arguments
    ---------
    tokenizer : transformers.PreTrainedTokenizerBase
        Tokenizer of the LLM, with a chat template.
    labels : list of str
        Emotion labels, in their canonical order.
    n_queries : int
        Number of audio embeddings spliced after the cue.
    prompts : dict, optional
        Task -> list of instructions; defaults to the built-in bank.
    system_prompt : str, optional
        System message; the template's default when None.
    chat_template_kwargs : dict, optional
        Extra variables for the chat template (e.g. a fixed ``date_string``
        for Llama 3 so that prompts do not change with the day).

    Example
    -------
    >>> import random
    >>> from speechbrain_emosllm.testing import make_tiny_tokenizer
    >>> builder = PromptBuilder(make_tiny_tokenizer(), ["Happy", "Sad"], 4)
    >>> ex = builder.training_example("joint", "yes", "Sad", random.Random(0))
    >>> len(ex["input_ids"]) == len(ex["span_ids"])
    True
    >>> builder.decode(ex["input_ids"]).split("assistant\n")[1]
    '| ASR: yes | Emotion: Sad<|im_end|>'
    """

    def __init__(
        self,
        tokenizer,
        labels,
        n_queries,
        prompts=None,
        system_prompt=None,
        chat_template_kwargs=None,
    ):
        self.tokenizer = tokenizer
        self.labels = list(labels)
        self.n_queries = n_queries
        self.prompts = prompts or PROMPTS
        self.system_prompt = system_prompt
        self.template_kwargs = chat_template_kwargs or {}
        self.placeholder_id = tokenizer.pad_token_id or 0
        self.end_of_turn = self._find_end_of_turn()
        self.end_of_turn_ids = self.encode(self.end_of_turn)
        self.label_ids = [
            self.encode(" " + label) + self.end_of_turn_ids
            for label in self.labels
        ]

    def encode(self, text):
        """Token ids of ``text`` without added special tokens.

        Arguments
        ---------
        text : str
            Text to tokenise.

        Returns
        -------
        list of int
        """
        return self.tokenizer.encode(text, add_special_tokens=False)

    def decode(self, ids):
        """Text of token ids, special tokens kept.

        Arguments
        ---------
        ids : list of int
            Token ids.

        Returns
        -------
        str
        """
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    def _render(self, user_text, answer=None):
        messages = []
        if self.system_prompt is not None:
            messages.append({"role": "system", "content": self.system_prompt})
        messages.append({"role": "user", "content": user_text})
        if answer is not None:
            messages.append({"role": "assistant", "content": answer})
        return self.tokenizer.apply_chat_template(
            messages,
            tokenize=False,
            add_generation_prompt=answer is None,
            **self.template_kwargs,
        )

    def _find_end_of_turn(self):
        # Chat templates differ in how an assistant turn ends ("<|eot_id|>",
        # "<|im_end|>\n", ...); read it off the template itself.
        probe = "PROBE"
        opened = self._render("x")
        closed = self._render("x", answer=probe)
        if not closed.startswith(opened) or probe not in closed:
            raise ValueError(
                "The tokenizer's chat template does not append the assistant "
                "turn after its generation prompt; EmoSLLM needs one that "
                "does (Llama 3, ChatML, ...)."
            )
        tail = closed[len(opened) :].split(probe, 1)[1]
        return tail.rstrip("\n") or self.tokenizer.eos_token

    def emotion_list(self, rng=None):
        """The labels as listed in a prompt, shuffled when ``rng`` is given.

        Arguments
        ---------
        rng : random.Random, optional
            Source of the shuffle; canonical order when None.

        Returns
        -------
        str
        """
        labels = list(self.labels)
        if rng is not None:
            rng.shuffle(labels)
        return ", ".join(labels)

    def user_prompt(self, task, rng=None, hint=None):
        """The instruction of a user turn (without the audio).

        Arguments
        ---------
        task : str
            ``"asr"``, ``"ser"`` or ``"joint"``.
        rng : random.Random, optional
            Picks a random paraphrase and shuffles the labels; the first
            paraphrase and the canonical label order when None.
        hint : str, optional
            A transcript given to the model in the prompt.

        Returns
        -------
        str
        """
        bank = self.prompts[task]
        instruction = bank[rng.randrange(len(bank))] if rng else bank[0]
        text = instruction.format(emotions=self.emotion_list(rng))
        if hint is not None:
            text += HINT_TEMPLATE.format(transcript=hint.strip())
        return f"{text} {AUDIO_CUE}"

    def _prompt_ids(self, user_text):
        marker = "\x00AUDIO\x00"
        before, after = self._render(user_text + marker).split(marker)
        before_ids, after_ids = self.encode(before), self.encode(after)
        ids = before_ids + [self.placeholder_id] * self.n_queries + after_ids
        return ids, len(before_ids)

    def _answer_ids(self, pieces):
        ids, spans = [], []
        for text, span in pieces:
            piece_ids = self.encode(text)
            ids += piece_ids
            spans += [span] * len(piece_ids)
        return ids, spans

    def label_token_ids(self):
        """Token ids of each class name as an answer spells it.

        Returns
        -------
        list of list of int
            One list per label, in ``self.labels`` order.
        """
        pieces = [
            format_answer("ser", emotion=label)[-1] for label in self.labels
        ]
        return [self.encode(text) for text, _ in pieces]

    def training_example(self, task, transcript, emotion, rng):
        """Token ids of a full training example.

        Arguments
        ---------
        task : str
            ``"asr"``, ``"ser"`` or ``"joint"``.
        transcript : str
            Reference transcript.
        emotion : str
            Emotion label.
        rng : random.Random
            Picks the paraphrase and the label order.

        Returns
        -------
        dict
            ``input_ids`` (audio slots hold a placeholder id),
            ``span_ids`` (IGNORE, MARKUP, TRANSCRIPT or EMOTION per token)
            and ``audio_start``.
        """
        prompt_ids, audio_start = self._prompt_ids(self.user_prompt(task, rng))
        pieces = format_answer(task, transcript, emotion)
        pieces.append((self.end_of_turn, MARKUP))
        answer_ids, answer_spans = self._answer_ids(pieces)
        return {
            "input_ids": prompt_ids + answer_ids,
            "span_ids": [IGNORE] * len(prompt_ids) + answer_spans,
            "audio_start": audio_start,
        }

    def inference_prefix(self, mode, transcript=None, rng=None):
        """Token ids up to where the model must answer, for a mode.

        Arguments
        ---------
        mode : str
            A name in ``speechbrain_emosllm.modes.MODES``.
        transcript : str, optional
            The transcript for ``prompt_hint`` and ``joint_oracle`` (the
            reference), or ``joint_generated`` (the model's own).
        rng : random.Random, optional
            Random paraphrase and label order; fixed ones when None.

        Returns
        -------
        dict
            ``input_ids``, ``audio_start`` and ``answer_start`` (where the
            assistant's answer, including any prefix, begins).
        """
        spec = get_mode(mode)
        if spec.needs_reference and transcript is None:
            raise ValueError(f"Mode '{mode}' needs a transcript.")
        user = self.user_prompt(
            spec.task, rng, transcript if spec.hint else None
        )
        ids, audio_start = self._prompt_ids(user)
        answer_start = len(ids)
        # The answer is opened up to the label when everything before it
        # is known: always for SER, with a transcript for joint answers
        # (the reference, or the model's own once generated).
        if spec.task == "ser" or (
            spec.task == "joint" and transcript is not None
        ):
            pieces = format_answer(spec.task, transcript, "X")[:-1]
            ids += self._answer_ids(pieces)[0]
        return {
            "input_ids": ids,
            "audio_start": audio_start,
            "answer_start": answer_start,
        }
